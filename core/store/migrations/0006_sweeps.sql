-- Deposit sweeps (core/payouts/sweeps.py): rows of the payouts table, so one
-- state machine (core/payouts/machine.py), one nonce manager and one worker
-- sign, store, broadcast and track every transaction the core sends.
--   kind 'gas_funding': the hot key sends a deposit address the native coin
--                       its sweep's gas costs;
--   kind 'sweep':       the deposit key hd:<index> sends the address's funds
--                       to the chain's treasury, once its gas funding confirmed.
-- They belong to the platform: no merchant, no ledger hold.
ALTER TABLE payouts ALTER COLUMN merchant_id DROP NOT NULL;
ALTER TABLE payouts DROP CONSTRAINT payouts_kind_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_kind_check
    CHECK (kind IN ('payout', 'refund', 'sweep', 'gas_funding'));
ALTER TABLE payouts ADD CONSTRAINT payouts_platform_kinds
    CHECK ((merchant_id IS NULL) = (kind IN ('sweep', 'gas_funding')));
-- The signing key's address (sweeps: the deposit address), for its nonce checks.
ALTER TABLE payouts ADD COLUMN source_address text;
-- A sweep is signed only once this gas funding confirmed (cancelled if it failed).
ALTER TABLE payouts ADD COLUMN funded_by text REFERENCES payouts (id);
-- Sweeps: the fees the funding paid for (wei per gas). The sweep is signed with
-- exactly these and never replaced above them: the address holds no more gas.
ALTER TABLE payouts ADD COLUMN fixed_max_fee numeric(78,0);
ALTER TABLE payouts ADD COLUMN fixed_tip numeric(78,0);

-- At most one sweep and one gas funding in progress per deposit address:
-- planning twice (two cores, a retried RunSweeps) cannot send twice.
CREATE UNIQUE INDEX sweeps_one_active ON payouts (chain, source_address)
    WHERE kind = 'sweep' AND state NOT IN ('confirmed', 'failed', 'cancelled');
CREATE UNIQUE INDEX gas_fundings_one_active ON payouts (chain, destination)
    WHERE kind = 'gas_funding' AND state NOT IN ('confirmed', 'failed', 'cancelled');
CREATE INDEX payouts_platform ON payouts (create_time, id) WHERE merchant_id IS NULL;
