-- Webhook endpoints, their deliveries and every attempt; the resource type of
-- outbox events so that readers decode payloads without guessing.

-- Which kassa.core.v1 message `payload` holds ("invoice"; later "payout",
-- "refund"). Existing rows are all invoices. A constant default adds the
-- column without rewriting (or updating) the immutable rows.
ALTER TABLE events ADD COLUMN resource_type text NOT NULL DEFAULT 'invoice';

CREATE TABLE webhook_endpoints (
    id                          text PRIMARY KEY,
    merchant_id                 text NOT NULL REFERENCES merchants (id),
    url                         text NOT NULL,
    -- Empty: every event type.
    event_types                 text[] NOT NULL DEFAULT '{}',
    description                 text NOT NULL DEFAULT '',
    disabled                    boolean NOT NULL DEFAULT false,
    -- Signing secrets must be readable to sign; they are never sent.
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expire_time timestamptz,
    -- The endpoint receives events above this sequence: the outbox head when
    -- it was created, so it never receives the past by accident.
    after_sequence              bigint NOT NULL,
    request_id                  text,
    rotation_request_id         text,
    create_time                 timestamptz NOT NULL DEFAULT now(),
    update_time                 timestamptz NOT NULL DEFAULT now(),
    delete_time                 timestamptz,
    UNIQUE (merchant_id, request_id)
);
CREATE INDEX webhook_endpoints_by_merchant ON webhook_endpoints (merchant_id) WHERE delete_time IS NULL;

-- The dispatcher's position in the outbox: moved in the same transaction as
-- the deliveries it creates, so every committed event gets its deliveries
-- exactly once. Sequences are gapless in commit order, so a cursor suffices.
CREATE TABLE webhook_dispatch_cursor (
    id            integer PRIMARY KEY CHECK (id = 1),
    last_sequence bigint NOT NULL
);
INSERT INTO webhook_dispatch_cursor SELECT 1, last FROM event_sequence;

CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY,
    endpoint_id       text NOT NULL REFERENCES webhook_endpoints (id),
    merchant_id       text NOT NULL,
    event_sequence    bigint NOT NULL REFERENCES events (sequence),
    event_id          uuid NOT NULL,
    event_type        text NOT NULL,
    resource_name     text NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    -- Attempts started (claimed), including one cut short by a crash.
    attempt_count     integer NOT NULL DEFAULT 0,
    -- When pending: when it is due, or when the lease of an attempt in
    -- flight runs out (then another worker retries it: at least once).
    next_attempt_time timestamptz NOT NULL,
    -- Retries stop after this; the last attempt is made at it.
    give_up_time      timestamptz NOT NULL,
    create_time       timestamptz NOT NULL DEFAULT now(),
    update_time       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_sequence)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_time) WHERE status = 'pending';
-- Per endpoint and resource, only the lowest pending sequence may be sent.
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, resource_name, event_sequence)
    WHERE status = 'pending';
-- Listing (always within a merchant), newest event first.
CREATE INDEX webhook_deliveries_by_merchant ON webhook_deliveries (merchant_id, event_sequence DESC);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer NOT NULL,
    attempt_time timestamptz NOT NULL,
    -- NULL when no response came (timeout, connection refused, …).
    status_code  integer,
    error        text NOT NULL DEFAULT '',
    duration_ms  integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
