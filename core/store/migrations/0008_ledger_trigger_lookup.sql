-- The posting trigger looked pending transfers up with a LEFT JOIN against
-- ledger_transfers. PL/pgSQL caches the plan a session first builds for it,
-- and while the table's statistics are stale (right after a bulk load, or a
-- young ledger) that plan scans and hashes the whole ledger on every posting.
-- A scalar subquery by primary key is an index lookup whatever the statistics.
-- Same results: a missing pending transfer yields NULL in both forms.
CREATE OR REPLACE FUNCTION ledger_apply_transfers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH resolved AS (
        SELECT n.debit_account_id, n.credit_account_id, n.flags, n.amount,
               (SELECT p.amount FROM ledger_transfers p WHERE p.id = n.pending_id) AS pending_amount
          FROM new_rows n
    ), moved AS (
        SELECT r.debit_account_id AS account_id,
               CASE WHEN r.flags & 2 <> 0 THEN r.amount
                    WHEN r.flags & 12 <> 0 THEN -r.pending_amount ELSE 0 END AS dp,
               CASE WHEN r.flags & 10 <> 0 THEN 0 ELSE r.amount END AS dpo,
               0 AS cp, 0 AS cpo
          FROM resolved r
        UNION ALL
        SELECT r.credit_account_id, 0, 0,
               CASE WHEN r.flags & 2 <> 0 THEN r.amount
                    WHEN r.flags & 12 <> 0 THEN -r.pending_amount ELSE 0 END,
               CASE WHEN r.flags & 10 <> 0 THEN 0 ELSE r.amount END
          FROM resolved r
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
