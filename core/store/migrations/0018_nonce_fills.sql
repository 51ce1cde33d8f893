-- Nonce fills (issue 19, core/payouts/gaps.py): a transaction of the hot key to
-- its own address, value 0, no data, at a nonce below the key's next one that
-- no payout can still land. Without it every later payout on the chain waits
-- forever behind the gap. A platform row like a sweep: no merchant, no hold,
-- nothing moved; its only ledger booking is the network fee the hot key paid.
ALTER TABLE payouts DROP CONSTRAINT payouts_kind_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_kind_check
    CHECK (kind IN ('payout', 'refund', 'sweep', 'gas_funding', 'nonce_fill'));
ALTER TABLE payouts DROP CONSTRAINT payouts_platform_kinds;
ALTER TABLE payouts ADD CONSTRAINT payouts_platform_kinds
    CHECK ((merchant_id IS NULL) = (kind IN ('sweep', 'gas_funding', 'nonce_fill')));
-- Every other kind moves something; a fill moves exactly nothing.
ALTER TABLE payouts DROP CONSTRAINT payouts_amount_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_amount_check
    CHECK (CASE WHEN kind = 'nonce_fill' THEN amount = 0 ELSE amount > 0 END);
-- Never two fills standing for one nonce: one that can still land (or landed)
-- holds it; only a failed or cancelled fill lets another be made.
CREATE UNIQUE INDEX nonce_fills_one_per_nonce ON payouts (chain, key_id, nonce)
    WHERE kind = 'nonce_fill' AND state NOT IN ('failed', 'cancelled');
