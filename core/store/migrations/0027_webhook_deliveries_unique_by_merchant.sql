-- One index entry fewer per webhook delivery (issue #16, webhook deliveries).
--
-- webhook_deliveries had two indexes on nearly the same columns: the unique
-- (endpoint_id, event_sequence), the dispatcher's and the redelivery's
-- ON CONFLICT target, and webhook_deliveries_by_merchant (merchant_id,
-- event_sequence DESC), the listing's. Every insert and every non-HOT update
-- of a delivery (the record's: status is in the pending indexes' predicates)
-- wrote an entry in both. Now one unique index, (merchant_id,
-- event_sequence, endpoint_id), serves both:
--
-- - Uniqueness is the same. A delivery's merchant_id is its event's (every
--   writer takes it from the events row: the dispatcher joins events and the
--   endpoints of the event's merchant, a redelivery picks events of the
--   endpoint's merchant, core/webhooks/dispatch.py and endpoints.py), so for
--   one event_sequence it is one value, and two rows with the same
--   (endpoint_id, event_sequence) have the same triple. The ON CONFLICT
--   targets name the triple (tests/integration/test_webhook_unique_index.py).
-- - The listing (always within a merchant, newest event first) walks it
--   backwards as it walked webhook_deliveries_by_merchant; a reader by
--   endpoint alone (support's queue, an endpoint's cancellation) finds its
--   pending rows in webhook_deliveries_order and its failed ones in
--   webhook_deliveries_failed, as before for those statuses.
-- - Ascending event_sequence: a merchant's new deliveries append at the
--   right edge of its range.
--
-- Measured (a script of the worker's statements, 3,000 deliveries a round
-- dispatched, claimed and recorded, a CHECKPOINT before each, five
-- alternations): WAL 1,720-1,800 -> 1,560-1,640 bytes per delivery,
-- PostgreSQL's CPU 67-87 -> 67-77 us (medians 77 -> 70); the events bench:
-- see docs/performance.md.
--
-- On a populated table: the build reads the table once and sorts every
-- delivery's entry (writes to the table wait meanwhile: 0.15-0.18 s at
-- 303,000 deliveries, three builds); it cannot fail on existing rows, whose
-- (endpoint_id, event_sequence) were unique.
CREATE UNIQUE INDEX webhook_deliveries_unique_by_merchant
    ON webhook_deliveries (merchant_id, event_sequence, endpoint_id);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_id_event_sequence_key;
DROP INDEX webhook_deliveries_by_merchant;
ALTER INDEX webhook_deliveries_unique_by_merchant RENAME TO webhook_deliveries_by_merchant;
