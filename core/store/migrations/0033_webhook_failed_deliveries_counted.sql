-- The count of failed webhook deliveries kept as a number (issue #16): the
-- metrics sampler (core/metrics.SAMPLE) read it with count(*) over
-- webhook_deliveries_failed (0020), one index entry per delivery that ever
-- gave up: a failed delivery stays failed until someone asks for it again,
-- so the count grew with the history forever (and its entries, on pages a
-- vacuum has not marked all-visible, each cost a heap visit). One row now,
-- read by primary key: the sampler's cost no longer depends on the history
-- (tests/integration/test_webhook_sample.py).
--
-- The row triggers (an update of status, a delete) fire only for a change
-- into or out of 'failed' (a delivery giving up, a redelivery of a failed
-- one): the WHEN clause is evaluated as the row is written, and only a true
-- one queues an event, so a record of a success or a retry pays that test
-- only, and a claim (which sets no status) not even that; inserts are
-- counted per statement (below). They are deferred to the
-- commit, so that the counter's row is the last lock any transaction takes:
-- a record giving up on one delivery while a redelivery holds another would
-- otherwise each hold what the other waits for. Two transactions changing the
-- count wait for each other's commit only.
--
-- The migration runs in one transaction and counts the rows under a lock
-- that keeps writers out until its commit (reads go on): the count starts
-- exact. Its build reads webhook_deliveries_failed once.
CREATE TABLE webhook_delivery_counts (
    status     text PRIMARY KEY CHECK (status = 'failed'),
    deliveries bigint NOT NULL CHECK (deliveries >= 0)
);
LOCK TABLE webhook_deliveries IN SHARE MODE;
INSERT INTO webhook_delivery_counts (status, deliveries)
SELECT 'failed', count(*) FROM webhook_deliveries WHERE status = 'failed';

CREATE FUNCTION webhook_delivery_failed_counted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change bigint := 0;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = 'failed' THEN
        change := change + 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'failed' THEN
        change := change - 1;
    END IF;
    UPDATE webhook_delivery_counts SET deliveries = deliveries + change WHERE status = 'failed';
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER webhook_deliveries_failed_changed
    AFTER UPDATE OF status ON webhook_deliveries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN ((OLD.status = 'failed') <> (NEW.status = 'failed'))
    EXECUTE FUNCTION webhook_delivery_failed_counted();
CREATE CONSTRAINT TRIGGER webhook_deliveries_failed_deleted
    AFTER DELETE ON webhook_deliveries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.status = 'failed')
    EXECUTE FUNCTION webhook_delivery_failed_counted();

-- Inserted deliveries are counted per statement, from the rows the insert's
-- statement trigger (0030) already collects (one set of rows for both: ~0.2
-- ms a statement of 1,000, 0.2 us a delivery): a row trigger on INSERT, even
-- one whose WHEN clause is false, has the dispatcher's insert evaluate it per
-- row, where the deliveries it stores are all pending. Not deferred (a
-- statement trigger cannot be): the counter is locked at the end of an insert
-- that stores a failed delivery, which Kassa's code never does.
CREATE FUNCTION webhook_deliveries_failed_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE webhook_delivery_counts c SET deliveries = c.deliveries + n.failed
      FROM (SELECT count(*) AS failed FROM inserted WHERE status = 'failed') n
     WHERE c.status = 'failed' AND n.failed > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_failed_inserted AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_failed_inserted();

CREATE FUNCTION webhook_delivery_counts_emptied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE webhook_delivery_counts SET deliveries = 0;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_deliveries_counted_truncate
    AFTER TRUNCATE ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_delivery_counts_emptied();
