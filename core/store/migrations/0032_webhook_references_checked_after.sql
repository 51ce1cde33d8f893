-- No row lock for a delivery's update (issue #16, webhook deliveries).
--
-- Migration 0030 checked a changed endpoint_id or event_sequence with a
-- BEFORE UPDATE OF trigger. Its column list and WHEN clause keep the check
-- from running for the claim's and the record's updates, but PostgreSQL
-- takes a BEFORE ROW UPDATE trigger's old row with a lock of it before it
-- looks at either (GetTupleForTrigger): every UPDATE of a delivery locked
-- the row first. The record's lock was a WAL record of its own (XLOG_HEAP_LOCK,
-- ~59 B) and one more write of the row's page, per delivery; the claim's rows,
-- already locked FOR UPDATE, paid the lock's lookup only.
--
-- The same check AFTER the update: an AFTER ROW trigger's old row is read
-- without a lock, and webhook_deliveries_attempt_archived (0029), an AFTER
-- ROW UPDATE trigger, has every update read it anyway; the column list and
-- WHEN clause are then evaluated as before. A delivery naming an endpoint or
-- event that does not exist is refused as before (foreign_key_violation, at
-- the end of the statement that wrote it: the statement is rolled back
-- either way; tests/integration/test_webhook_delivery_references.py).
-- tests/integration/test_webhook_update_locks.py. Measured: claims of 32
-- and records of 16 of 6,000 deliveries, five alternations, WAL 792-796 ->
-- 738-746 B per delivery (every pair), the recorder's CPU 36.7-48.3 ->
-- 35.0-51.7 us (inside the noise); the events bench (4 alternating pairs on a
-- loaded machine) 2,133-2,179 -> 2,043-2,102 B per delivery (every pair),
-- PostgreSQL's CPU inside the noise.
--
-- Catalog only: instant on a populated table.
DROP TRIGGER webhook_deliveries_references_changed ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_references_changed
    AFTER UPDATE OF endpoint_id, event_sequence ON webhook_deliveries
    FOR EACH ROW
    WHEN (OLD.endpoint_id IS DISTINCT FROM NEW.endpoint_id
          OR OLD.event_sequence IS DISTINCT FROM NEW.event_sequence)
    EXECUTE FUNCTION webhook_deliveries_check_changed();
