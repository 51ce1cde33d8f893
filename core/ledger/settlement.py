"""Settling invoices in the ledger: confirmed payments leave the merchant's
incoming account once the invoice is settled — up to the amount due into
available, any excess into refunds_payable (what a refund will debit).

Settlement reconciles to a target rather than booking events: the target is
a pure function of the invoice as it now stands, the amounts already settled
are read back from the ledger (transfers settle:{invoice}:{n}), and only the
difference is posted. A reorg that un-settles an invoice therefore posts the
reversing difference, and replays post nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core import names
from core.invoices import state as sm
from core.ledger import accounts as chart
from core.ledger import payments, store
from core.ledger.rules import Transfer

SETTLEMENT = 3  # transfer code (payments use 1 and 2)
_SETTLED = frozenset({sm.State.PAID, sm.State.OVERPAID})
# The merchant or a refund has the last word on these: settlement stays as it was.
_FROZEN = frozenset({sm.State.REFUNDED, sm.State.CANCELLED, sm.State.UNDERPAID})


@dataclass(frozen=True)
class Target:
    available: int
    excess: int


def target(invoice: sm.Invoice) -> Target | None:
    """What should have left incoming for this invoice; None: leave it as it is."""
    if invoice.state in _FROZEN:
        return None
    if invoice.state in _SETTLED:
        available = min(invoice.funds.confirmed, invoice.amount_due)
        return Target(available, invoice.funds.confirmed - available)
    return Target(0, 0)


@dataclass(frozen=True)
class Settled:
    available: int = 0
    excess: int = 0
    transfers: int = 0


async def settled(
    conn: asyncpg.Connection, invoices: Sequence[asyncpg.Record]
) -> dict[str, Settled]:
    """What each invoice has settled so far, read back from its settle:{invoice}:{n} transfers."""
    ids = [r["id"] for r in invoices]
    # The ids of one invoice sort together; ';' is the character after ':'.
    rows = await conn.fetch(
        """SELECT r.invoice_id, t.debit_account_id, t.credit_account_id, t.amount
             FROM unnest($1::text[], $2::text[], $3::text[]) AS r(invoice_id, lo, hi)
             JOIN ledger_transfers t ON t.id >= r.lo AND t.id < r.hi""",
        ids,
        [f"settle:{i}:" for i in ids],
        [f"settle:{i};" for i in ids],
    )
    incoming = {
        r["id"]: chart.merchant_account(r["merchant_id"], r["asset"], "incoming") for r in invoices
    }
    sums: dict[str, list[int]] = {i: [0, 0, 0] for i in ids}
    for r in rows:
        sign = 1 if r["debit_account_id"] == incoming[r["invoice_id"]] else -1
        other = r["credit_account_id"] if sign == 1 else r["debit_account_id"]
        entry = sums[r["invoice_id"]]
        entry[0 if other.endswith(":available") else 1] += sign * r["amount"]
        entry[2] += 1
    return {i: Settled(*v) for i, v in sums.items()}


def _move(invoice_id: str, n: int, merchant_id: str, asset: str, kind: str, delta: int) -> Transfer:
    incoming = chart.merchant_account(merchant_id, asset, "incoming")
    other = chart.merchant_account(merchant_id, asset, kind)
    debit, credit = (incoming, other) if delta > 0 else (other, incoming)
    return Transfer(
        id=f"settle:{invoice_id}:{n:06d}",
        debit_account_id=debit,
        credit_account_id=credit,
        amount=abs(delta),
        asset=asset,
        code=SETTLEMENT,
        reference=names.invoice(merchant_id, invoice_id),
    )


async def reconcile(
    conn: asyncpg.Connection,
    changed: Sequence[tuple[asyncpg.Record, sm.Invoice, sm.Invoice]],
    now: datetime,
) -> None:
    """Posts what each changed invoice's settlement lacks, in the caller's transaction.

    `changed` holds (row, invoice before, invoice after). The caller holds each
    invoice's row lock, so numbering settle transfers by count is race-free.
    """
    wanted: dict[str, Target] = {}
    for row, before, after in changed:
        goal = target(after)
        # Nothing was ever settled for an invoice that has not been paid: skip the read.
        if goal is not None and (goal != Target(0, 0) or before.state in _SETTLED):
            wanted[row["id"]] = goal
    if not wanted:
        return
    rows = [row for row, _, _ in changed if row["id"] in wanted]
    done = await settled(conn, rows)
    batch: list[Transfer] = []
    for row in rows:
        goal, have = wanted[row["id"]], done[row["id"]]
        n = have.transfers
        for kind, delta in (
            ("available", goal.available - have.available),
            ("refunds_payable", goal.excess - have.excess),
        ):
            if delta:
                n += 1
                batch.append(_move(row["id"], n, row["merchant_id"], row["asset"], kind, delta))
    if batch:
        # One statement creates whatever accounts are missing, in id order.
        accounts = {
            a.id: a
            for merchant, asset in {(row["merchant_id"], row["asset"]) for row in rows}
            for a in chart.merchant_accounts(merchant, asset)
        }
        await store.ensure_accounts(conn, [accounts[i] for i in sorted(accounts)])
        await payments.post_or_raise(conn, batch, now)
