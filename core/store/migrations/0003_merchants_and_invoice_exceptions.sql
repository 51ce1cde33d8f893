-- Merchants, their API keys, and what the full invoice lifecycle records:
-- tolerance, the late-payment window, refunds, marks, and payments of the
-- wrong asset (recorded, never counted).

CREATE TABLE merchants (
    id           text PRIMARY KEY,
    display_name text NOT NULL,
    request_id   text UNIQUE,
    create_time  timestamptz NOT NULL DEFAULT now()
);

-- merchant_id NULL: a platform key (e.g. merchants:admin). Only a SHA-256 of
-- the 256-bit random secret is stored; the secret is shown once.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    merchant_id text REFERENCES merchants (id),
    secret_hash bytea NOT NULL,
    scopes      text[] NOT NULL,
    description text NOT NULL DEFAULT '',
    create_time timestamptz NOT NULL DEFAULT now(),
    revoke_time timestamptz
);
CREATE INDEX api_keys_by_merchant ON api_keys (merchant_id);

ALTER TABLE invoices
    ADD COLUMN underpayment_tolerance numeric(78,0) NOT NULL DEFAULT 0 CHECK (underpayment_tolerance >= 0),
    ADD COLUMN monitoring_end_time timestamptz,
    ADD COLUMN amount_mempool numeric(78,0) NOT NULL DEFAULT 0 CHECK (amount_mempool >= 0),
    ADD COLUMN amount_late numeric(78,0) NOT NULL DEFAULT 0 CHECK (amount_late >= 0),
    ADD COLUMN wrong_asset_transfers integer NOT NULL DEFAULT 0,
    ADD COLUMN amount_refunded numeric(78,0) NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    ADD COLUMN mark_state text,
    ADD COLUMN mark_reason text,
    ADD COLUMN mark_actor text,
    ADD COLUMN mark_time timestamptz;
UPDATE invoices SET monitoring_end_time = expire_time + interval '1 day';
ALTER TABLE invoices ALTER COLUMN monitoring_end_time SET NOT NULL;
CREATE INDEX invoices_watched ON invoices (monitoring_end_time);
CREATE INDEX invoices_filter_state ON invoices (merchant_id, state, create_time DESC);
CREATE INDEX invoices_by_order ON invoices (merchant_id, merchant_order_id);

-- A transfer of another asset to a deposit address: kept, flagged, not counted.
ALTER TABLE payments ADD COLUMN counted boolean NOT NULL DEFAULT true;

ALTER TABLE invoices ADD CONSTRAINT invoices_merchant_fk FOREIGN KEY (merchant_id) REFERENCES merchants (id);
