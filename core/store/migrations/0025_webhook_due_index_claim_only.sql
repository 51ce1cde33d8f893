-- The due index serves the claim only (issue #16, webhook deliveries).
--
-- webhook_deliveries_due and webhook_deliveries_order had the same predicate
-- (status = 'pending'), so any query on pending deliveries could walk the due
-- index. After statistics taken when nothing was pending (autovacuum's or the
-- dispatcher's ANALYZE at a quiet moment), the planner believed both partial
-- indexes empty and took the smaller one for the claim's ordering probe: a
-- walk of every pending delivery's due entry, filtered, per candidate, where
-- webhook_deliveries_order answers with one descent. In the events bench's
-- late rounds: ~450 entries read per probe, 1,700 per delivery, a claim
-- 3.7-5.7 ms against 0.4-0.7 in the rounds before, PostgreSQL 290-390 us per
-- delivery against 113-143 (tests/integration/test_webhook_claim_plan.py).
--
-- next_attempt_time is NOT NULL, so the added clause changes no entry; the
-- planner uses a partial index only for queries that imply its predicate,
-- and only a query bounding next_attempt_time (the claim's
-- "next_attempt_time <= now", min(next_attempt_time), which the planner
-- turns into a scan with IS NOT NULL) implies this one. The ordering probe,
-- the record's UPDATE and the counts of pending deliveries no longer can.
-- The build reads the whole table once (writes to it wait meanwhile) and
-- sorts only the pending rows' entries: a partial index's size, whatever
-- the history of finished deliveries.
CREATE INDEX webhook_deliveries_due_claim ON webhook_deliveries (next_attempt_time)
    WHERE status = 'pending' AND next_attempt_time IS NOT NULL;
DROP INDEX webhook_deliveries_due;
ALTER INDEX webhook_deliveries_due_claim RENAME TO webhook_deliveries_due;
