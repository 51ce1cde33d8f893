-- The metrics sampler counts failed webhook deliveries every `interval_s`
-- (core/metrics.SAMPLE). Without an index naming them, each sample scanned
-- all of webhook_deliveries: 4.3 ms at 12,000 rows, growing with the
-- delivery history forever. Failed rows are few (retries exhausted), so this
-- partial index is small; a delivery that succeeds never enters it, and an
-- update that changes status was never HOT (status is in the pending
-- indexes' predicates), so the hot path pays nothing for it.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (create_time) WHERE status = 'failed';
