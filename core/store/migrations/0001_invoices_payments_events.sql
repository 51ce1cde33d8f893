-- Invoices, the payments behind them, chain cursors and the event outbox.
-- Amounts are base units in numeric(78,0): every uint256 fits, no floats.

CREATE TABLE invoices (
    id                     text PRIMARY KEY,
    merchant_id            text NOT NULL,
    merchant_order_id      text NOT NULL,
    request_id             text,
    request_hash           bytea,
    chain                  text NOT NULL,
    asset                  text NOT NULL,
    asset_decimals         integer NOT NULL,
    amount_due             numeric(78,0) NOT NULL CHECK (amount_due > 0),
    price_amount           text,
    price_currency         text,
    quote_rate             text,
    quote_source           text,
    quote_time             timestamptz,
    deposit_address        text NOT NULL UNIQUE,
    derivation_index       bigint NOT NULL UNIQUE,
    confirmations_required integer NOT NULL CHECK (confirmations_required >= 1),
    expire_time            timestamptz NOT NULL,
    state                  text NOT NULL,
    flags                  text[] NOT NULL DEFAULT '{}',
    amount_received        numeric(78,0) NOT NULL DEFAULT 0 CHECK (amount_received >= 0),
    amount_pending         numeric(78,0) NOT NULL DEFAULT 0 CHECK (amount_pending >= 0),
    metadata               jsonb NOT NULL DEFAULT '{}',
    create_time            timestamptz NOT NULL DEFAULT now(),
    update_time            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, request_id)
);
CREATE INDEX invoices_by_merchant ON invoices (merchant_id, create_time DESC, id DESC);
CREATE INDEX invoices_awaiting_expiry ON invoices (expire_time) WHERE state = 'awaiting_payment';

-- Deposit addresses are m/44'/60'/0'/0/{index}; an index is never reused.
CREATE SEQUENCE deposit_index_seq MINVALUE 0 START 0;

CREATE TABLE payments (
    chain          text NOT NULL,
    tx_hash        text NOT NULL,
    transfer_index integer NOT NULL,
    invoice_id     text NOT NULL REFERENCES invoices (id),
    asset          text NOT NULL,
    from_address   text NOT NULL,
    to_address     text NOT NULL,
    amount         numeric(78,0) NOT NULL CHECK (amount > 0),
    -- Where it was last included; NULL while reorged out.
    block_height   bigint,
    block_hash     text,
    -- confirming | confirmed | reorged
    status         text NOT NULL,
    -- The head height at which it reaches the invoice's threshold.
    confirm_height bigint,
    first_seen_time timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, tx_hash, transfer_index)
);
CREATE INDEX payments_confirming ON payments (chain, confirm_height) WHERE status = 'confirming';
CREATE INDEX payments_by_invoice ON payments (invoice_id);
CREATE INDEX payments_by_block ON payments (chain, block_height) WHERE block_height IS NOT NULL;

-- The last block whose effects are committed, per chain.
CREATE TABLE chain_cursors (
    chain       text PRIMARY KEY,
    height      bigint NOT NULL,
    hash        text NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now()
);

-- Recently applied blocks: the locator for resuming after a reorg.
CREATE TABLE chain_blocks (
    chain       text NOT NULL,
    height      bigint NOT NULL,
    hash        text NOT NULL,
    parent_hash text NOT NULL,
    PRIMARY KEY (chain, height)
);

-- The outbox. Sequences are allocated from event_sequence under its row
-- lock, so they are gapless and increase in commit order: a reader that
-- resumes after sequence N can never miss an event committed later below N.
CREATE TABLE event_sequence (
    id   integer PRIMARY KEY CHECK (id = 1),
    last bigint NOT NULL
);
INSERT INTO event_sequence VALUES (1, 0);

CREATE TABLE events (
    sequence      bigint PRIMARY KEY,
    id            uuid NOT NULL UNIQUE,
    type          text NOT NULL,
    merchant_id   text NOT NULL,
    resource_name text NOT NULL,
    -- The resource as it stood, a serialized kassa.core.v1 message.
    payload       bytea NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_merchant ON events (merchant_id, sequence);

CREATE FUNCTION kassa_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: rows are immutable', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_change();
