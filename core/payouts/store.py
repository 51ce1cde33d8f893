"""Reads of payouts for their answers and events: a payout's transactions and
approvals, a sweep's, and the invoice a refund pays back. The rows go to
core/render/payouts.py; nothing here decides or writes."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class PayoutView:
    """A payout row with what its message shows beside it."""

    row: asyncpg.Record
    transactions: list[asyncpg.Record]
    approvals: list[str]


@dataclass(frozen=True)
class SweepView:
    row: asyncpg.Record
    transactions: list[asyncpg.Record]
    invoice_merchant: str  # the merchant of the swept invoice, "" if none


async def _transactions(conn: asyncpg.Connection, payout_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM payout_transactions WHERE payout_id = $1 ORDER BY create_time, tx_hash",
            payout_id,
        )
    )


async def view(conn: asyncpg.Connection, row: asyncpg.Record) -> PayoutView:
    approvals = []
    if row["sign_digest"] is not None:
        approvals = [
            r["approver_key_id"]
            for r in await conn.fetch(
                "SELECT approver_key_id FROM payout_approvals WHERE payout_id = $1 AND body_digest = $2",
                row["id"],
                row["sign_digest"],
            )
        ]
    return PayoutView(row, await _transactions(conn, row["id"]), approvals)


async def sweep_view(conn: asyncpg.Connection, row: asyncpg.Record) -> SweepView:
    transactions = await _transactions(conn, row["id"])
    merchant = ""
    if row["invoice_id"]:
        merchant = await conn.fetchval(
            "SELECT merchant_id FROM invoices WHERE id = $1", row["invoice_id"]
        )
    return SweepView(row, transactions, merchant or "")


async def refunded_invoice(
    conn: asyncpg.Connection, merchant_id: str, invoice_id: str
) -> asyncpg.Record | None:
    """The chain and asset of the invoice a refund pays back, None if it is not the merchant's."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT chain, asset FROM invoices WHERE id = $1 AND merchant_id = $2",
        invoice_id,
        merchant_id,
    )
    return row
