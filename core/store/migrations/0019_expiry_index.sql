-- The expiry clock's own index.
--
-- The clock (core/invoices/clock.py, DUE) moves invoices past their deadline
-- in three states: awaiting_payment ones expire, detected and confirming ones
-- may turn underpaid. invoices_awaiting_expiry named awaiting_payment only,
-- so the planner could not use it for the clock's query, and every pass was a
-- sequential scan of invoices (204 ms with 1,000,000 invoices, against 2.1 ms
-- with this index; docs/performance.md, Ingest).
CREATE INDEX invoices_expiring ON invoices (expire_time)
    WHERE state IN ('awaiting_payment', 'detected', 'confirming');
DROP INDEX invoices_awaiting_expiry;
