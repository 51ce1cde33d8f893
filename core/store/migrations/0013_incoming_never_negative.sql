-- A merchant's incoming account never goes negative (issue 19): the chain
-- applier now posts a settlement's reversal before its payment's reversal,
-- and books what a merchant already received (refunded or paid out) to its
-- receivable (code 2005, created on first use with flag 2: debits cover
-- credits). An account that already breaks its nature keeps no flag (the
-- CHECK would refuse it); `kassactl ledger check` names it. The guard
-- trigger refuses flag changes, so it is paused here.
ALTER TABLE ledger_accounts DISABLE TRIGGER ledger_accounts_guard;
UPDATE ledger_accounts SET flags = 1
 WHERE flags = 0 AND code = 2002 AND id LIKE 'merchant:%'
   AND debits_pending + debits_posted <= credits_posted;
ALTER TABLE ledger_accounts ENABLE TRIGGER ledger_accounts_guard;
