-- Fewer index entries per webhook delivery (issue #16, webhook deliveries).
--
-- A delivery row was written three times: inserted by the dispatcher,
-- updated by the claim, updated by the record. The claim's lease moved
-- next_attempt_time, the key of webhook_deliveries_due, so the claim was
-- never a HOT update: a new entry in each of the table's six indexes per
-- delivery, the costliest part of the worker's statement (EXPLAIN ANALYZE
-- in the events bench: ~80 us a claimed row against ~50 for the record).
--
-- - The lease in a column of its own, which no index covers: the claim sets
--   lease_time (and update_time, attempt_count), not next_attempt_time, so
--   it changes no indexed column and can be HOT. A lease is in force while
--   lease_time = update_time (no write since the claim: the record, a
--   redelivery and a cancellation all move update_time) and it is younger
--   than the lease (core/webhooks/worker.py, CLAIM_SQL).
-- - fillfactor 70: room on each page for the claim's new row versions, so
--   they stay on the page (HOT needs the same page; the record's new version
--   takes room there too). Measured in the events bench (A/B, 15-24 rounds
--   each at load 3-8): at 70, 0.37 of all updates were HOT (three claims in
--   four); at 50, 0.50 (every claim), but PostgreSQL's CPU per delivery was
--   no lower (1.56 raw POSTs' CPU against 1.46 at 70, within the noise)
--   with twice the table's pages to write. Applies to new pages.
-- - webhook_deliveries_by_event (event_id) dropped: its only reader, the
--   deliveries listing filtered by event, now finds the event's sequence
--   (events.id is unique) and walks webhook_deliveries_by_merchant
--   (merchant_id, event_sequence), which it reads anyway; every insert and
--   non-HOT update of a delivery paid an entry in it.
ALTER TABLE webhook_deliveries ADD COLUMN lease_time timestamptz;
ALTER TABLE webhook_deliveries SET (fillfactor = 70);
DROP INDEX webhook_deliveries_by_event;
