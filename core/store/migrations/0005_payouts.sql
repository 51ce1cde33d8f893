-- Payouts and refunds (core/payouts): money leaving through the signer.
-- A payout row is written only by core/payouts after core/payouts/machine.py
-- decided the step; its signed transactions are stored before any broadcast.

CREATE TABLE payouts (
    id                  text PRIMARY KEY,
    merchant_id         text NOT NULL REFERENCES merchants (id),
    kind                text NOT NULL CHECK (kind IN ('payout', 'refund')),
    invoice_id          text REFERENCES invoices (id),
    chain               text NOT NULL,
    asset               text NOT NULL,
    destination         text NOT NULL,
    amount              numeric(78,0) NOT NULL CHECK (amount > 0),
    reference           text NOT NULL DEFAULT '',
    request_id          text,
    -- SHA-256 of the create request: a retry with another body is refused.
    request_hash        bytea NOT NULL,
    state               text NOT NULL,
    key_id              text NOT NULL,                -- signer key id, e.g. hot-1
    -- Ledger hold legs: source account kinds and amounts (payout:{id}:hold:{n}).
    hold_sources        text[] NOT NULL,
    hold_amounts        numeric(78,0)[] NOT NULL,
    hold_released       boolean NOT NULL DEFAULT false,
    nonce               numeric(78,0),
    replacing           boolean NOT NULL DEFAULT false,
    -- The serialized kassa.signer.v1.SignRequestBody now being signed or
    -- waiting for approvals: resent byte for byte.
    sign_body           bytea,
    sign_digest         bytea,
    sign_expire_time    timestamptz,
    sign_max_fee        numeric(78,0),
    sign_tip            numeric(78,0),
    waiting_reason      text NOT NULL DEFAULT '',
    required_approvers  text[] NOT NULL DEFAULT '{}',
    approval_threshold  integer NOT NULL DEFAULT 0,
    failure_reason      text NOT NULL DEFAULT '',
    landed_tx_hash      text,
    network_fee         numeric(78,0),
    next_attempt_time   timestamptz NOT NULL DEFAULT now(),
    create_time         timestamptz NOT NULL DEFAULT now(),
    update_time         timestamptz NOT NULL DEFAULT now(),
    confirm_time        timestamptz,
    UNIQUE (merchant_id, request_id)
);
CREATE INDEX payouts_by_merchant ON payouts (merchant_id, create_time, id);
CREATE INDEX payouts_active ON payouts (state)
    WHERE state NOT IN ('confirmed', 'failed', 'cancelled');
CREATE INDEX payouts_by_invoice ON payouts (invoice_id) WHERE invoice_id IS NOT NULL;

-- Every signed candidate, stored before it is broadcast; all share the
-- payout's nonce, so at most one can land.
CREATE TABLE payout_transactions (
    tx_hash           text PRIMARY KEY,
    payout_id         text NOT NULL REFERENCES payouts (id),
    nonce             numeric(78,0) NOT NULL,
    max_fee_per_gas   numeric(78,0) NOT NULL,
    max_priority_fee_per_gas numeric(78,0) NOT NULL,
    raw               bytea NOT NULL,
    status            text NOT NULL DEFAULT 'candidate'
                      CHECK (status IN ('candidate', 'landed', 'dropped')),
    create_time       timestamptz NOT NULL DEFAULT now(),
    broadcast_time    timestamptz
);
CREATE INDEX payout_transactions_by_payout ON payout_transactions (payout_id, create_time);

-- Approver signatures over one sign request body (by digest).
CREATE TABLE payout_approvals (
    payout_id       text NOT NULL REFERENCES payouts (id),
    body_digest     bytea NOT NULL,
    approver_key_id text NOT NULL,
    signature       bytea NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payout_id, body_digest, approver_key_id)
);

-- Nonces per (chain, signing key): the next never-used nonce, and nonces
-- handed back because the signer refused their transaction (never signed,
-- never broadcast) — reused first so the chain never waits on a gap.
CREATE TABLE payout_nonces (
    chain      text NOT NULL,
    key_id     text NOT NULL,
    address    text NOT NULL,
    next_nonce numeric(78,0) NOT NULL CHECK (next_nonce >= 0),
    PRIMARY KEY (chain, key_id)
);
CREATE TABLE payout_free_nonces (
    chain   text NOT NULL,
    key_id  text NOT NULL,
    nonce   numeric(78,0) NOT NULL,
    PRIMARY KEY (chain, key_id, nonce)
);
