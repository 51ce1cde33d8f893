-- A delivery's latest recorded attempt in its own row (issue #16, webhook
-- deliveries).
--
-- The record (core/webhooks/worker.py, _RECORD) inserted a row of
-- webhook_attempts for every attempt beside its UPDATE of the delivery: a heap
-- tuple and a primary-key entry, ON CONFLICT's speculative insertion, and the
-- foreign key's check, which fired after the statement's UPDATE and locked
-- the delivery row's new version (one more heap record). Most deliveries are
-- attempted once, and the record writes the delivery row anyway. Now the
-- attempt that goes with the record's decision is written into that row
-- (last_attempt ... last_duration_ms): a first-try success is one UPDATE and
-- no attempt row. The record by itself (3,000 deliveries, records of 13, five
-- alternations): PostgreSQL's CPU medians 53 -> 43 us per delivery, WAL
-- 605-617 -> 341-345 B. The events bench (4 alternating pairs): the record's
-- execution time 33-45 -> 22-31 us per delivery, the run's WAL 2,418-2,468
-- -> 2,198-2,264 B per delivery.
--
-- webhook_attempts is now a view, the union of
-- - the delivery row's latest attempt (last_attempt IS NOT NULL), and
-- - webhook_attempts_archive: every other attempt. The record's latest moves
--   there when a later attempt of the delivery is recorded (the trigger below,
--   so that no writer of last_attempt can drop one), and an attempt the record
--   was fenced out of (a re-claim after its lease ran out, a redelivery asked
--   for meanwhile) goes there directly.
-- Every reader (the API's listing, support's queue, the tests, the bench)
-- reads the view: the same columns, in the same order, each attempt once.
--
-- Existing rows: every attempt stays in the archive (the old table, renamed:
-- its rows, primary key and foreign key unchanged), every delivery's
-- last_attempt is NULL; the view lists exactly what the table did. The next
-- attempt recorded for an existing delivery goes into its row; nothing moves.
-- Catalog only (nullable columns without a default, a rename, a view, a
-- trigger): instant on a populated table.
--
-- The archive's foreign key stays. The row's own attempt needs none: it is
-- in its delivery's row.
ALTER TABLE webhook_attempts RENAME TO webhook_attempts_archive;

-- The widest first, the text last: no alignment padding between them (21
-- bytes more in a recorded row, not 28; the record's new row version takes
-- room on its page that a claim's HOT update would use).
ALTER TABLE webhook_deliveries
    ADD COLUMN last_attempt_time timestamptz,
    ADD COLUMN last_attempt integer,
    -- NULL when no response came (timeout, connection refused, ...).
    ADD COLUMN last_status_code integer,
    ADD COLUMN last_duration_ms integer,
    ADD COLUMN last_error text,
    ADD CONSTRAINT webhook_deliveries_last_attempt_whole CHECK (
        (last_attempt IS NULL) = (last_attempt_time IS NULL)
        AND (last_attempt IS NULL) = (last_error IS NULL)
        AND (last_attempt IS NULL) = (last_duration_ms IS NULL));

CREATE VIEW webhook_attempts AS
    SELECT delivery_id, attempt, attempt_time, status_code, error, duration_ms
      FROM webhook_attempts_archive
    UNION ALL
    SELECT id, last_attempt, last_attempt_time, last_status_code, last_error, last_duration_ms
      FROM webhook_deliveries
     WHERE last_attempt IS NOT NULL;

-- The row's latest attempt, replaced by another, is kept in the archive.
CREATE FUNCTION webhook_attempt_archived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_attempts_archive
        (delivery_id, attempt, attempt_time, status_code, error, duration_ms)
    VALUES (OLD.id, OLD.last_attempt, OLD.last_attempt_time, OLD.last_status_code,
            OLD.last_error, OLD.last_duration_ms)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
-- The WHEN clause is evaluated in the executor, no function call: an update
-- that sets the row's first attempt (a first try), or none, pays nothing more.
CREATE TRIGGER webhook_deliveries_attempt_archived
    AFTER UPDATE OF last_attempt ON webhook_deliveries FOR EACH ROW
    WHEN (OLD.last_attempt IS NOT NULL AND OLD.last_attempt IS DISTINCT FROM NEW.last_attempt)
    EXECUTE FUNCTION webhook_attempt_archived();

-- An attempt inserted into the view (an import, the events bench's history)
-- goes to the archive, as into the table before.
ALTER VIEW webhook_attempts ALTER COLUMN error SET DEFAULT '';
CREATE FUNCTION webhook_attempt_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_attempts_archive
        (delivery_id, attempt, attempt_time, status_code, error, duration_ms)
    VALUES (NEW.delivery_id, NEW.attempt, NEW.attempt_time, NEW.status_code, NEW.error,
            NEW.duration_ms);
    RETURN NEW;
END $$;
CREATE TRIGGER webhook_attempts_insert INSTEAD OF INSERT ON webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION webhook_attempt_inserted();
