-- The ledger: TigerBeetle's accounts and immutable transfers.
-- core/ledger/rules.py decides which transfers are accepted; this schema
-- keeps what was accepted honest: transfers are never updated or deleted,
-- an account's totals move only through ledger_apply_transfers() (fired by
-- inserting transfers), a pending transfer is resolved at most once, and no
-- account can end a statement with a broken flag.

CREATE TABLE ledger_accounts (
    id              text PRIMARY KEY,
    asset           text NOT NULL,
    code            integer NOT NULL CHECK (code BETWEEN 0 AND 65535),
    -- 1 debits_must_not_exceed_credits, 2 credits_must_not_exceed_debits
    flags           integer NOT NULL DEFAULT 0 CHECK (flags IN (0, 1, 2)),
    debits_pending  numeric(78,0) NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted   numeric(78,0) NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending numeric(78,0) NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted  numeric(78,0) NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    user_data       text NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT debits_must_not_exceed_credits
        CHECK (flags & 1 = 0 OR debits_pending + debits_posted <= credits_posted),
    CONSTRAINT credits_must_not_exceed_debits
        CHECK (flags & 2 = 0 OR credits_pending + credits_posted <= debits_posted)
);

CREATE TABLE ledger_transfers (
    id                text PRIMARY KEY,
    -- Commit-independent order of creation: statements, page tokens.
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    debit_account_id  text NOT NULL,
    credit_account_id text NOT NULL CHECK (credit_account_id <> debit_account_id),
    -- For a post: the amount posted; for a void: the amount released.
    amount            numeric(78,0) NOT NULL CHECK (amount > 0),
    asset             text NOT NULL,
    code              integer NOT NULL CHECK (code BETWEEN 0 AND 65535),
    -- 1 linked, 2 pending, 4 post_pending, 8 void_pending
    flags             integer NOT NULL CHECK (flags BETWEEN 0 AND 15),
    pending_id        text,
    timeout_s         integer NOT NULL DEFAULT 0 CHECK (timeout_s >= 0),
    reference         text NOT NULL DEFAULT '',
    user_data         text NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL DEFAULT now(),
    expire_time       timestamptz,
    CHECK ((flags & 12 <> 0) = (pending_id IS NOT NULL))
);
CREATE INDEX ledger_transfers_by_debit ON ledger_transfers (debit_account_id, seq);
CREATE INDEX ledger_transfers_by_credit ON ledger_transfers (credit_account_id, seq);
-- At most one post or void per pending transfer, whoever races.
CREATE UNIQUE INDEX ledger_transfers_resolution ON ledger_transfers (pending_id)
    WHERE pending_id IS NOT NULL;
CREATE INDEX ledger_transfers_expiring ON ledger_transfers (expire_time)
    WHERE expire_time IS NOT NULL;

CREATE TRIGGER ledger_transfers_immutable BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_change();
CREATE FUNCTION kassa_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE on % is not allowed: rows are immutable', TG_TABLE_NAME;
END $$;
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_refuse_truncate();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_refuse_truncate();

-- The posting function: one aggregated UPDATE per INSERT statement, so the
-- totals are always the sums of the transfers (the same arithmetic as
-- core.ledger.rules.effects). A post or void releases its pending amount.
CREATE FUNCTION ledger_apply_transfers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        SELECT n.debit_account_id AS account_id,
               CASE WHEN n.flags & 2 <> 0 THEN n.amount
                    WHEN n.flags & 12 <> 0 THEN -p.amount ELSE 0 END AS dp,
               CASE WHEN n.flags & 10 <> 0 THEN 0 ELSE n.amount END AS dpo,
               0 AS cp, 0 AS cpo
          FROM new_rows n LEFT JOIN ledger_transfers p ON p.id = n.pending_id
        UNION ALL
        SELECT n.credit_account_id, 0, 0,
               CASE WHEN n.flags & 2 <> 0 THEN n.amount
                    WHEN n.flags & 12 <> 0 THEN -p.amount ELSE 0 END,
               CASE WHEN n.flags & 10 <> 0 THEN 0 ELSE n.amount END
          FROM new_rows n LEFT JOIN ledger_transfers p ON p.id = n.pending_id
    ), totals AS (
        SELECT account_id, sum(dp) AS dp, sum(dpo) AS dpo, sum(cp) AS cp, sum(cpo) AS cpo
          FROM moved GROUP BY account_id
    )
    UPDATE ledger_accounts a
       SET debits_pending = a.debits_pending + t.dp,
           debits_posted = a.debits_posted + t.dpo,
           credits_pending = a.credits_pending + t.cp,
           credits_posted = a.credits_posted + t.cpo,
           update_time = now()
      FROM totals t
     WHERE a.id = t.account_id;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_transfers_post AFTER INSERT ON ledger_transfers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_transfers();

-- Accounts are never deleted; their identity never changes; their totals
-- change only inside the posting trigger (trigger depth > 1 there).
CREATE FUNCTION ledger_guard_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'DELETE on ledger_accounts is not allowed';
    END IF;
    IF (NEW.id, NEW.asset, NEW.code, NEW.flags, NEW.user_data, NEW.create_time)
       IS DISTINCT FROM (OLD.id, OLD.asset, OLD.code, OLD.flags, OLD.user_data, OLD.create_time) THEN
        RAISE EXCEPTION 'ledger account % is immutable but for its totals', OLD.id;
    END IF;
    IF pg_trigger_depth() < 2 AND
       (NEW.debits_pending, NEW.debits_posted, NEW.credits_pending, NEW.credits_posted)
       IS DISTINCT FROM
       (OLD.debits_pending, OLD.debits_posted, OLD.credits_pending, OLD.credits_posted) THEN
        RAISE EXCEPTION 'ledger account % totals change only by inserting transfers', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_accounts_guard BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_account();

-- Each inclusion of a payment in a block gets its own ledger transfers.
ALTER TABLE payments ADD COLUMN inclusions integer NOT NULL DEFAULT 1;
