-- Payouts are final only past the chain's finality depth: until then the
-- worker keeps tracking a landed payout, and a reorg that removes its
-- transaction sends it back to broadcast (core/payouts/machine.py).
ALTER TABLE payouts
    ADD COLUMN reorgs     integer NOT NULL DEFAULT 0 CHECK (reorgs >= 0),
    ADD COLUMN final_time timestamptz;
-- Landed before this migration: taken as final (nothing tracked them).
UPDATE payouts SET final_time = update_time WHERE state IN ('confirmed', 'failed');
CREATE INDEX payouts_landed_unfinal ON payouts (chain)
    WHERE final_time IS NULL AND landed_tx_hash IS NOT NULL;

-- Accounts that must never go negative carry the flag that enforces it:
-- the merchant's balances that payouts and refunds hold on (available,
-- refunds payable, payouts in flight: credits must cover debits; incoming
-- not yet, see core/ledger/payments.py) and the platform's network fees (an
-- expense: debits must cover credits). Accounts that already break their
-- nature keep no flag (the CHECK would refuse it); `kassactl ledger check`
-- names them. The guard trigger refuses flag changes, so it is paused here.
ALTER TABLE ledger_accounts DISABLE TRIGGER ledger_accounts_guard;
UPDATE ledger_accounts SET flags = 1
 WHERE flags = 0 AND code IN (2001, 2003, 2004) AND id LIKE 'merchant:%'
   AND debits_pending + debits_posted <= credits_posted;
UPDATE ledger_accounts SET flags = 2
 WHERE flags = 0 AND code = 1003 AND id LIKE 'platform:network_fees:%'
   AND credits_pending + credits_posted <= debits_posted;
ALTER TABLE ledger_accounts ENABLE TRIGGER ledger_accounts_guard;
