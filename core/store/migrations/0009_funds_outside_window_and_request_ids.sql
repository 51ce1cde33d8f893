-- Every unit accounted for: funds first seen after an invoice's monitoring
-- window are recorded and parked (refundable, sweepable), never dropped; the
-- invoice keeps their sum beside its other sums so its decision is replayable.
ALTER TABLE invoices ADD COLUMN amount_outside numeric(78,0) NOT NULL DEFAULT 0
    CHECK (amount_outside >= 0 AND amount_outside <= amount_late);

-- request_id idempotency (core/idempotency.py), one behaviour for every write:
-- the same id and body repeats the first answer, the same id with another body
-- is REQUEST_ID_REUSED. Writes without a row of their own (cancel, mark) keep
-- their request ids here; the others keep the body's hash beside their id.
CREATE TABLE request_ids (
    scope        text NOT NULL,         -- the operation, e.g. invoices.cancel
    owner        text NOT NULL,         -- whose ids these are (a merchant)
    request_id   text NOT NULL,
    request_hash bytea NOT NULL,
    resource     text NOT NULL,         -- the name of what the first answer returned
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, owner, request_id)
);
ALTER TABLE merchants ADD COLUMN request_hash bytea;
ALTER TABLE webhook_endpoints ADD COLUMN request_hash bytea;
ALTER TABLE webhook_endpoints ADD COLUMN rotation_request_hash bytea;
