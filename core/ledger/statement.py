"""Account statements: an account's transfers as CSV with running balances.

Balances follow the credit-normal convention: balance = credits posted -
debits posted, pending_balance = credits pending - debits pending, both
running from the opening figures (everything before the start time). A
transfer that references an invoice (merchants/{m}/invoices/{i}) carries its
fiat value at the invoice's quoted rate (fiat per whole unit), rounded half
even to cents: Decimal arithmetic, never floats.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal

import asyncpg

from core.ledger.rules import Transfer, effects

# $1 account, $2 after seq, $3 start time, $4 end time, $5 limit: both index
# scans (debit side, credit side) stay ordered by seq.
ACCOUNT_TRANSFERS = """
SELECT * FROM (
    (SELECT * FROM ledger_transfers
      WHERE debit_account_id = $1 AND seq > $2 AND create_time >= $3 AND create_time < $4
      ORDER BY seq LIMIT $5)
    UNION ALL
    (SELECT * FROM ledger_transfers
      WHERE credit_account_id = $1 AND seq > $2 AND create_time >= $3 AND create_time < $4
      ORDER BY seq LIMIT $5)
) t ORDER BY seq LIMIT $5
"""

_ROWS = """
SELECT t.seq, t.create_time, t.id, t.flags, t.debit_account_id, t.credit_account_id, t.amount,
       t.asset, t.code, t.pending_id, t.reference, coalesce(p.amount, 0) AS pending_amount,
       i.quote_rate, i.price_currency, i.asset_decimals
  FROM ledger_transfers t
  LEFT JOIN ledger_transfers p ON p.id = t.pending_id
  LEFT JOIN invoices i ON t.reference LIKE 'merchants/%/invoices/%'
                      AND i.id = split_part(t.reference, '/', 4)
                      AND i.merchant_id = split_part(t.reference, '/', 2)
 WHERE (t.debit_account_id = $1 OR t.credit_account_id = $1)
   AND t.create_time >= $2 AND t.create_time < $3
 ORDER BY t.seq
"""

_OPENING = """
SELECT coalesce(sum(CASE WHEN t.credit_account_id = $1 THEN t.amount ELSE -t.amount END)
                FILTER (WHERE t.flags & 10 = 0), 0) AS balance,
       coalesce(sum(CASE WHEN t.flags & 2 <> 0 THEN t.amount
                         WHEN t.flags & 12 <> 0 THEN -p.amount ELSE 0 END
                    * CASE WHEN t.credit_account_id = $1 THEN 1 ELSE -1 END), 0) AS pending
  FROM ledger_transfers t LEFT JOIN ledger_transfers p ON p.id = t.pending_id
 WHERE (t.debit_account_id = $1 OR t.credit_account_id = $1) AND t.create_time < $2
"""

HEADER = [
    "seq",
    "create_time",
    "transfer_id",
    "kind",
    "side",
    "counterparty_account_id",
    "asset",
    "amount",
    "balance_change",
    "balance",
    "pending_change",
    "pending_balance",
    "reference",
    "fiat_currency",
    "fiat_value",
]
CHUNK_ROWS = 1000
_CENTS = Decimal("0.01")
_EXACT = Context(prec=200)


def kind_of(flags: int) -> str:
    for bit, name in ((2, "pending"), (4, "post"), (8, "void")):
        if flags & bit:
            return name
    return "transfer"


def fiat_value(amount: int, rate: str | None, decimals: int | None) -> str:
    if not rate or decimals is None:
        return ""
    value = _EXACT.divide(_EXACT.multiply(Decimal(amount), Decimal(rate)), Decimal(10) ** decimals)
    return str(value.quantize(_CENTS, rounding=ROUND_HALF_EVEN, context=_EXACT))


async def csv_chunks(
    conn: asyncpg.Connection, account_id: str, start: datetime, end: datetime
) -> AsyncIterator[bytes]:
    """The statement as UTF-8 CSV pieces; run inside one read-only transaction."""
    opening = await conn.fetchrow(_OPENING, account_id, start)
    balance, pending = int(opening["balance"]), int(opening["pending"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerow(["", "", "", "opening", "", "", "", "", "", balance, "", pending, "", "", ""])
    rows = 0
    async for r in conn.cursor(_ROWS, account_id, start, end, prefetch=CHUNK_ROWS):
        credit = r["credit_account_id"] == account_id
        t = Transfer(r["id"], amount=int(r["amount"]), flags=r["flags"])
        debit_effect, credit_effect = effects(t, int(r["pending_amount"]))
        mine = credit_effect if credit else debit_effect
        sign = 1 if credit else -1
        balance_change = sign * (mine.credits_posted if credit else mine.debits_posted)
        pending_change = sign * (mine.credits_pending if credit else mine.debits_pending)
        balance += balance_change
        pending += pending_change
        writer.writerow(
            [
                r["seq"],
                r["create_time"].isoformat(),
                r["id"],
                kind_of(r["flags"]),
                "credit" if credit else "debit",
                r["debit_account_id"] if credit else r["credit_account_id"],
                r["asset"],
                r["amount"],
                balance_change,
                balance,
                pending_change,
                pending,
                r["reference"],
                r["price_currency"] or "",
                fiat_value(int(r["amount"]), r["quote_rate"], r["asset_decimals"]),
            ]
        )
        rows += 1
        if rows % CHUNK_ROWS == 0:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()
