-- A cheaper ANALYZE after a burst of webhook deliveries (issue #16).
--
-- The dispatcher analyzes the claim's columns after each burst
-- (core/webhooks/dispatch.refresh_statistics, CLAIMED_STATISTICS): without
-- it the claim is planned as if nothing were pending. ANALYZE samples 300
-- rows per unit of the largest statistics target among the columns it
-- analyzes: at the default 100, 30,000 rows, which on a table with a past
-- is a read of most of its pages at every burst. The claim needs little of
-- what a fine histogram gives: how many deliveries are pending (status has
-- four values) and roughly how many are due. At 10, 3,000 rows: at 300,000
-- deliveries with 3,000 pending, five alternations, 80-97 -> 10-13 ms of
-- PostgreSQL's CPU per ANALYZE; pending estimated at 3,030-4,040 (2,630-3,280
-- at 100), and the claim still walks its indexes
-- (tests/integration/test_webhook_claim_plan.py). Autovacuum's ANALYZE of
-- every column samples for the other columns' (default) targets as before
-- and keeps these four at 10 buckets.
--
-- Catalog only: instant on a populated table; the next ANALYZE applies it.
ALTER TABLE webhook_deliveries
    ALTER COLUMN status SET STATISTICS 10,
    ALTER COLUMN next_attempt_time SET STATISTICS 10,
    ALTER COLUMN lease_time SET STATISTICS 10,
    ALTER COLUMN update_time SET STATISTICS 10;
