"""The ledger's invariants, verified on a live database (`kassactl ledger check`).

Each check is one query that returns the first offending row, so the
command names the first violation it finds. Order: the books balance per
asset; each account's totals are the sums of its transfers; no flag is
broken; no Kassa account's balance breaks its nature (flag or not); every
transfer is well-formed against its accounts and pending
transfer; the guards that keep it so are installed and enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

_EFFECTS = """
SELECT n.debit_account_id AS account_id,
       CASE WHEN n.flags & 2 <> 0 THEN n.amount WHEN n.flags & 12 <> 0 THEN -p.amount ELSE 0 END AS dp,
       CASE WHEN n.flags & 10 <> 0 THEN 0 ELSE n.amount END AS dpo, 0 AS cp, 0 AS cpo
  FROM ledger_transfers n LEFT JOIN ledger_transfers p ON p.id = n.pending_id
UNION ALL
SELECT n.credit_account_id, 0, 0,
       CASE WHEN n.flags & 2 <> 0 THEN n.amount WHEN n.flags & 12 <> 0 THEN -p.amount ELSE 0 END,
       CASE WHEN n.flags & 10 <> 0 THEN 0 ELSE n.amount END
  FROM ledger_transfers n LEFT JOIN ledger_transfers p ON p.id = n.pending_id
"""


# The nature of Kassa's own accounts, by code (core/ledger/payments.py,
# core/payouts/ledger.py): what Kassa owes a merchant is never negative (its
# credits cover its debits), what Kassa holds or spent never is either (its
# debits cover its credits). The hot key (1005) may spend a float funded
# outside the ledger, and accounts created through the LedgerService carry
# their clients' codes: neither has a nature here.
CREDIT_NORMAL = (
    2001,
    2002,
    2003,
    2004,
)  # merchant: available, incoming, refunds payable, in flight
# platform: custody, network fees, treasury; merchant: receivable (what it owes)
DEBIT_NORMAL = (1001, 1003, 1004, 2005)
_KASSA_IDS = r"^(merchant|platform):"


@dataclass(frozen=True)
class Check:
    name: str
    sql: str
    describe: Callable[[asyncpg.Record], str]


CHECKS = (
    Check(
        "asset balance",
        """SELECT asset, sum(debits_posted) AS dpo, sum(credits_posted) AS cpo,
                  sum(debits_pending) AS dp, sum(credits_pending) AS cp
             FROM ledger_accounts GROUP BY asset
           HAVING sum(debits_posted) <> sum(credits_posted)
               OR sum(debits_pending) <> sum(credits_pending)
            ORDER BY asset LIMIT 1""",
        lambda r: (
            f"asset {r['asset']}: posted debits {r['dpo']} vs posted credits {r['cpo']}, "
            f"pending debits {r['dp']} vs pending credits {r['cp']}"
        ),
    ),
    Check(
        "account totals",
        f"""WITH sums AS (
                SELECT account_id, sum(dp) AS dp, sum(dpo) AS dpo, sum(cp) AS cp, sum(cpo) AS cpo
                  FROM ({_EFFECTS}) e GROUP BY account_id)
            SELECT coalesce(a.id, s.account_id) AS id,
                   a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
                   coalesce(s.dp, 0) AS s_dp, coalesce(s.dpo, 0) AS s_dpo,
                   coalesce(s.cp, 0) AS s_cp, coalesce(s.cpo, 0) AS s_cpo
              FROM ledger_accounts a FULL JOIN sums s ON s.account_id = a.id
             WHERE a.id IS NULL
                OR (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
                   IS DISTINCT FROM (coalesce(s.dp, 0), coalesce(s.dpo, 0),
                                     coalesce(s.cp, 0), coalesce(s.cpo, 0))
             ORDER BY 1 LIMIT 1""",  # noqa: S608 (a constant, no input)
        lambda r: (
            f"account {r['id']}: no such account, yet transfers name it"
            if r["debits_posted"] is None
            else f"account {r['id']}: totals (debits pending/posted, credits pending/posted) "
            f"{r['debits_pending']}/{r['debits_posted']}, "
            f"{r['credits_pending']}/{r['credits_posted']} "
            f"but its transfers sum to {r['s_dp']}/{r['s_dpo']}, {r['s_cp']}/{r['s_cpo']}"
        ),
    ),
    Check(
        "account flags",
        """SELECT id, flags FROM ledger_accounts
            WHERE (flags & 1 <> 0 AND debits_pending + debits_posted > credits_posted)
               OR (flags & 2 <> 0 AND credits_pending + credits_posted > debits_posted)
            ORDER BY id LIMIT 1""",
        lambda r: f"account {r['id']}: breaks its flags ({r['flags']})",
    ),
    Check(
        "account nature",
        f"""SELECT id, code, debits_posted - credits_posted AS net FROM ledger_accounts
            WHERE id ~ '{_KASSA_IDS}'
              AND ((code = ANY('{{{",".join(map(str, CREDIT_NORMAL))}}}'::int[])
                    AND debits_pending + debits_posted > credits_posted)
                OR (code = ANY('{{{",".join(map(str, DEBIT_NORMAL))}}}'::int[])
                    AND credits_pending + credits_posted > debits_posted))
            ORDER BY id LIMIT 1""",  # noqa: S608 (constants, no input)
        lambda r: (
            f"account {r['id']}: balance {-r['net']} breaks its nature "
            f"(code {r['code']}: credits must cover debits)"
            if r["code"] in CREDIT_NORMAL
            else f"account {r['id']}: balance {r['net']} breaks its nature "
            f"(code {r['code']}: debits must cover credits)"
        ),
    ),
    Check(
        "transfer assets",
        """SELECT t.id FROM ledger_transfers t
             JOIN ledger_accounts d ON d.id = t.debit_account_id
             JOIN ledger_accounts c ON c.id = t.credit_account_id
            WHERE t.asset <> d.asset OR t.asset <> c.asset ORDER BY t.seq LIMIT 1""",
        lambda r: f"transfer {r['id']}: asset differs from its accounts'",
    ),
    Check(
        "pending resolutions",
        """SELECT t.id, p.id AS pending FROM ledger_transfers t
             LEFT JOIN ledger_transfers p ON p.id = t.pending_id
            WHERE t.pending_id IS NOT NULL
              AND (p.id IS NULL OR p.flags & 2 = 0
                   OR (t.flags & 4 <> 0 AND t.amount > p.amount)
                   OR (t.flags & 8 <> 0 AND t.amount <> p.amount)
                   OR t.debit_account_id <> p.debit_account_id
                   OR t.credit_account_id <> p.credit_account_id)
            ORDER BY t.seq LIMIT 1""",
        lambda r: f"transfer {r['id']}: does not resolve pending transfer {r['pending']} validly",
    ),
    Check(
        "guards",
        """SELECT name FROM unnest(ARRAY['ledger_transfers_immutable', 'ledger_transfers_post',
                                        'ledger_accounts_guard', 'ledger_accounts_no_delete',
                                        'ledger_transfers_no_truncate'])
                  AS name
            WHERE NOT EXISTS (SELECT 1 FROM pg_trigger
                               WHERE tgname = name AND tgenabled <> 'D')
            LIMIT 1""",
        lambda r: f"trigger {r['name']} is missing or disabled",
    ),
)


async def first_violation(conn: asyncpg.Connection) -> str | None:
    """The first broken invariant, described; None when the ledger is sound."""
    # One snapshot for every check, so concurrent postings cannot fake a violation.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for check in CHECKS:
            row = await conn.fetchrow(check.sql)
            if row is not None:
                return f"{check.name}: {check.describe(row)}"
    return None


async def run(dsn: str) -> tuple[str | None, int, int]:
    """(first violation, accounts, transfers) of the ledger at `dsn`."""
    conn = await asyncpg.connect(dsn)
    try:
        violation = await first_violation(conn)
        accounts = await conn.fetchval("SELECT count(*) FROM ledger_accounts")
        transfers = await conn.fetchval("SELECT count(*) FROM ledger_transfers")
    finally:
        await conn.close()
    return violation, int(accounts), int(transfers)
