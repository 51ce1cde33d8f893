-- Reconciliation (core/reconcile): runs, their differences, the opening
-- baselines of operator-managed locations, transactions already proven, and
-- the exception entries a mismatch opens (read later by the exception queue).
-- Numbered 0012: 0009-0011 belong to other work in progress.

CREATE TABLE reconciliation_runs (
    id                    text PRIMARY KEY,
    chain                 text NOT NULL,
    request_id            text UNIQUE,
    trigger               text NOT NULL,          -- 'schedule' or the API key's actor
    height                bigint NOT NULL CHECK (height >= 0),
    block_hash            text NOT NULL,
    locations_compared    integer NOT NULL,
    balances_compared     integer NOT NULL,
    transactions_compared integer NOT NULL,
    unexplained_count     integer NOT NULL,
    start_time            timestamptz NOT NULL,
    finish_time           timestamptz NOT NULL
);
CREATE INDEX reconciliation_runs_newest ON reconciliation_runs (start_time DESC, id DESC);

CREATE TABLE reconciliation_differences (
    run_id             text NOT NULL REFERENCES reconciliation_runs (id),
    n                  integer NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('balance', 'transaction', 'unattributed')),
    asset              text NOT NULL,
    location           text NOT NULL,
    address            text NOT NULL,
    -- Balances: both sides and what nothing explains (signed: chain - ledger - explained).
    ledger_amount      numeric(78,0),
    chain_amount       numeric(78,0),
    unexplained_amount numeric(78,0) NOT NULL,
    -- [{kind, resource, amount}], amounts as decimal strings.
    explanations       jsonb NOT NULL DEFAULT '[]',
    tx_hash            text NOT NULL DEFAULT '',
    resource           text NOT NULL DEFAULT '',
    detail             text NOT NULL DEFAULT '',
    unexplained        boolean NOT NULL,
    PRIMARY KEY (run_id, n)
);

-- What the chain held beyond the ledger at a hot key or treasury the first
-- time a run saw it (funded outside Kassa); later runs flag changes of it.
CREATE TABLE reconciliation_baselines (
    chain        text NOT NULL,
    asset        text NOT NULL,
    location     text NOT NULL CHECK (location IN ('hot', 'treasury')),
    address      text NOT NULL,
    opening      numeric(78,0) NOT NULL,
    run_id       text NOT NULL REFERENCES reconciliation_runs (id),
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, asset, location, address)
);

-- Transactions whose record matched the chain at or below a run's height:
-- settled, so later runs do not fetch them again.
CREATE TABLE reconciliation_proven (
    chain     text NOT NULL,
    resource  text NOT NULL,
    tx_hash   text NOT NULL,
    run_id    text NOT NULL REFERENCES reconciliation_runs (id),
    PRIMARY KEY (chain, resource, tx_hash)
);

-- Things that need a person. One open entry per subject (dedup_key): a
-- difference that persists across runs updates its entry, it does not pile up.
CREATE TABLE exceptions (
    id            text PRIMARY KEY,
    kind          text NOT NULL,                 -- 'reconciliation_mismatch'
    dedup_key     text NOT NULL,
    resource      text NOT NULL,                 -- what it is about
    evidence      text NOT NULL,                 -- the run that found it: reconciliations/{id}
    detail        text NOT NULL,
    amount        numeric(78,0),
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    -- Balance mismatches: the location, for actions on it (re-baselining).
    chain         text,
    asset         text,
    location      text,
    address       text,
    -- The audit of its resolution: who, what, why, when (core/reconcile/exceptions.py).
    resolve_action     text CHECK (resolve_action IN ('acknowledge', 'rebaseline')),
    resolve_actor      text,
    resolve_reason     text,
    resolve_time       timestamptz,
    resolve_request_id text UNIQUE,
    CHECK ((state = 'resolved') = (resolve_time IS NOT NULL))
);
CREATE UNIQUE INDEX exceptions_one_open ON exceptions (dedup_key) WHERE state = 'open';
CREATE INDEX exceptions_open ON exceptions (create_time) WHERE state = 'open';
