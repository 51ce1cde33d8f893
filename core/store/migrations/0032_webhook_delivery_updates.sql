-- Lighter updates of a delivery (issue #16, webhook deliveries): no row lock
-- for any of them, and room on its page for the claim's new version.
--
-- 1. No row lock.
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

-- 2. fillfactor 70 -> 50. The claim is a HOT update only if its new version
-- fits on the row's page (0023). The table's rows grew since 0023 chose 70
-- (0029's latest attempt: ~200 B pending, ~230 recorded, in the events bench):
-- at 70 a page takes 28 new deliveries and leaves room for 12 new versions,
-- so a claim of more of a page's rows than that, or one made before the page
-- was pruned (a snapshot older than the previous claim's commit holds the
-- dead versions), was not HOT: a new entry in each of four indexes and the
-- row moved to another page (~0.3 of the claims in the events bench). At 50,
-- 20 a page and room for 19 (tests/integration/test_webhook_update_locks.py:
-- claims of 16, 43 of 320 not HOT at 70, none at 50). The events bench, 4
-- alternating pairs against 1. alone: WAL 2,087-2,112 -> 1,898-1,907 B per
-- delivery (every pair; webhook_deliveries' index entries 2.1 pkey and
-- by_merchant, 1.0 due and order: every claim HOT), the claim's execution
-- time 28.6-45.3 -> 23.4-33.4 us (3 of 4 lower), PostgreSQL's CPU per
-- round's median 160 -> 143 us (inside the noise of a loaded machine). The
-- cost: a finished delivery's page holds ~20 rows, not ~28 (the table and its
-- history ~40% more pages; at 70 the off-page claims left pages part-empty
-- too: 17.6 rows a page in the bench). Applies to pages filled from now on;
-- catalog only.
ALTER TABLE webhook_deliveries SET (fillfactor = 50);
