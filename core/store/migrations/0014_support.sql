-- Support operations (core/support): the audit trail of every support action,
-- the pending ones awaiting a second operator, and the notes (acknowledgements,
-- top-up requests, reviews, attachments) the derived queue reads back.

CREATE TABLE support_actions (
    id            text PRIMARY KEY,
    action        text NOT NULL CHECK (action IN ('accept_as_paid', 'request_top_up',
                      'refund_excess', 'refund_whole', 'mark_for_review',
                      'attach_transaction', 'redeliver_webhooks', 'acknowledge')),
    kind          text NOT NULL,               -- the queue item's kind (core/support/decide.py)
    subject       text NOT NULL,               -- its resource name
    reason        text NOT NULL CHECK (reason <> ''),
    actor         text NOT NULL,
    state         text NOT NULL CHECK (state IN ('done', 'pending_approval')),
    -- The item's facts when it was taken: an acknowledgement holds while they do.
    fingerprint   text NOT NULL DEFAULT '',
    -- A top-up request: the item is hidden until then.
    until_time    timestamptz,
    destination   text NOT NULL DEFAULT '',
    amount        numeric(78,0),
    tx_hash       text NOT NULL DEFAULT '',
    result        text NOT NULL DEFAULT '',
    approver      text,
    approve_time  timestamptz,
    request_id    text UNIQUE,
    request_hash  bytea,
    create_time   timestamptz NOT NULL,
    CHECK ((state = 'done') OR approver IS NULL),
    CHECK (approver IS NULL OR approver <> actor)
);
CREATE INDEX support_actions_newest ON support_actions (create_time DESC, id DESC);
CREATE INDEX support_actions_by_subject ON support_actions (subject, create_time DESC);

-- The invoices the queue looks at (core/support/queue.py uses the same predicate).
CREATE INDEX invoices_support ON invoices (update_time, id)
    WHERE state = 'underpaid' OR flags && '{paid_over,duplicate,paid_late,wrong_asset}'::text[];
-- The evidence of an item: the latest events of its resource.
CREATE INDEX events_by_resource ON events (resource_name, sequence DESC);

-- Incremental reconciliation runs (core/reconcile/runner.py): what a run was
-- and the ledger's last transfer it saw, so the next incremental run knows
-- what was touched since; custody booked to an invoice or sweep is found by
-- its reference.
ALTER TABLE reconciliation_runs
    ADD COLUMN incremental boolean NOT NULL DEFAULT false,
    ADD COLUMN ledger_seq  bigint,
    -- Transfer ids below ledger_seq the snapshot did not see (in flight then,
    -- or rolled back): the next incremental run looks at them too.
    ADD COLUMN ledger_gaps bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN since_run   text REFERENCES reconciliation_runs (id);
CREATE INDEX ledger_transfers_by_reference ON ledger_transfers (reference) WHERE reference <> '';

