-- A delivery's endpoint and event, checked once a statement instead of by two
-- foreign keys a row (issue #16).
--
-- webhook_deliveries.endpoint_id -> webhook_endpoints and event_sequence ->
-- events were foreign keys: each new delivery queued two after-row triggers,
-- each a lookup with a FOR KEY SHARE lock of the referenced row. The event's
-- lock writes a WAL record and dirties its page (one event row per
-- delivery). In EXPLAIN (ANALYZE) of the dispatcher's INSERT of 1,000
-- deliveries: 4.9 + 5.9 ms of its 26.7. The backend's CPU per delivery of
-- dispatch_once (1,000-event batches, 3 x 16 alternations): medians
-- 28.8-29.9 us with the foreign keys, 12.3-20.1 with this check, 10.9-18.6
-- with no check at all; WAL 690 -> 633 B per delivery.
--
-- The same guarantee, that no delivery names an endpoint or an event that
-- does not exist, now rests on:
-- - inserts: one statement-level trigger checks all of a statement's new
--   rows (its transition table): each distinct endpoint and each event probed
--   by primary key (~1 us a row). Every writer is checked, the dispatcher
--   and a redelivery alike, as the foreign keys did.
-- - a delivery's endpoint_id or event_sequence changed by an UPDATE: checked
--   per row (no statement of Kassa's sets them; an UPDATE OF trigger, so the
--   claim's and the record's updates do not fire it).
-- - the referenced rows never go away, so what the check saw stays true and
--   needs no lock: events are immutable already (events_immutable refuses
--   UPDATE and DELETE); an endpoint is deleted by its delete_time, and a
--   DELETE of its row or a change of its id is refused here, whether or not
--   a delivery names it (the foreign key refused only those named, and
--   needed a lock a delivery to know it); TRUNCATE of either table is
--   refused (the foreign keys refused it too).
-- The errors are foreign_key_violation (23503), as the foreign keys' were.
-- tests/integration/test_webhook_delivery_references.py.

ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_sequence_fkey;

CREATE FUNCTION webhook_deliveries_check_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- OFFSET 0: a probe of the primary key per row, whatever the table's
    -- size (a plain NOT EXISTS here was planned as a hash of all events).
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT endpoint_id FROM new_deliveries) n
                WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                                   WHERE e.id = n.endpoint_id OFFSET 0)) THEN
        RAISE EXCEPTION 'a webhook delivery names an endpoint that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM new_deliveries n
                WHERE NOT EXISTS (SELECT 1 FROM events ev
                                   WHERE ev.sequence = n.event_sequence OFFSET 0)) THEN
        RAISE EXCEPTION 'a webhook delivery names an event that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_references AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS new_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_check_new();

CREATE FUNCTION webhook_deliveries_check_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = NEW.endpoint_id) THEN
        RAISE EXCEPTION 'a webhook delivery names an endpoint that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM events WHERE sequence = NEW.event_sequence) THEN
        RAISE EXCEPTION 'a webhook delivery names an event that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER webhook_deliveries_references_changed
    BEFORE UPDATE OF endpoint_id, event_sequence ON webhook_deliveries
    FOR EACH ROW
    WHEN (OLD.endpoint_id IS DISTINCT FROM NEW.endpoint_id
          OR OLD.event_sequence IS DISTINCT FROM NEW.event_sequence)
    EXECUTE FUNCTION webhook_deliveries_check_changed();

CREATE FUNCTION webhook_refuse_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% of a row of % is not allowed: webhook deliveries may name it', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation';
END $$;
CREATE TRIGGER webhook_endpoints_kept BEFORE DELETE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION webhook_refuse_removal();
CREATE TRIGGER webhook_endpoints_id_kept BEFORE UPDATE OF id ON webhook_endpoints
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION webhook_refuse_removal();
CREATE TRIGGER webhook_endpoints_no_truncate BEFORE TRUNCATE ON webhook_endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_refuse_removal();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_refuse_truncate();
