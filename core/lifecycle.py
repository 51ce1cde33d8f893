"""Moves invoices through the state machine inside the caller's transaction.

Every path that can change an invoice (a block, an undo, the clock) ends
here: load the invoices locked, ask `invoice_state.decide`, write the new
state and one outbox event per step, all in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from core.api import render
from core.domain import invoice_state as sm
from core.events.outbox import NewEvent, append


async def lock_invoices(conn: asyncpg.Connection, ids: Iterable[str]) -> list[asyncpg.Record]:
    # A fixed lock order (by id) keeps concurrent writers free of deadlocks.
    return list(
        await conn.fetch(
            "SELECT * FROM invoices WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
            sorted(set(ids)),
        )
    )


async def funds_of(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, sm.Funds]:
    rows = await conn.fetch(
        """SELECT invoice_id,
                  coalesce(sum(amount) FILTER (WHERE status = 'confirming'), 0) AS confirming,
                  coalesce(sum(amount) FILTER (WHERE status = 'confirmed'), 0) AS confirmed
             FROM payments WHERE invoice_id = ANY($1::text[]) GROUP BY invoice_id""",
        list(ids),
    )
    funds = {i: sm.Funds() for i in ids}
    for r in rows:
        funds[r["invoice_id"]] = sm.Funds(
            confirming=int(r["confirming"]), confirmed=int(r["confirmed"])
        )
    return funds


async def payments_of(
    conn: asyncpg.Connection, ids: Sequence[str]
) -> dict[str, list[asyncpg.Record]]:
    by_invoice: dict[str, list[asyncpg.Record]] = {i: [] for i in ids}
    for r in await conn.fetch(
        "SELECT * FROM payments WHERE invoice_id = ANY($1::text[]) ORDER BY first_seen_time, tx_hash",
        list(ids),
    ):
        by_invoice[r["invoice_id"]].append(r)
    return by_invoice


def as_domain(row: asyncpg.Record) -> sm.Invoice:
    return sm.Invoice(
        state=sm.State(row["state"]),
        amount_due=int(row["amount_due"]),
        expire_time=row["expire_time"],
        funds=sm.Funds(
            confirmed=int(row["amount_received"]), confirming=int(row["amount_pending"])
        ),
    )


async def apply(
    conn: asyncpg.Connection,
    rows: Sequence[asyncpg.Record],
    events: dict[str, sm.Event],
    now: datetime,
    head_height: int | None = None,
    extra_events: dict[str, list[str]] | None = None,
) -> list[NewEvent]:
    """Decides and saves each invoice's event; returns the outbox events written.

    `extra_events` names further event types to announce for an invoice even
    when its state does not move (e.g. payment.reorged of an uncounted part).
    """
    extra_events = extra_events or {}
    changed: list[tuple[asyncpg.Record, sm.Decision]] = []
    for row in rows:
        decision = sm.decide(as_domain(row), events[row["id"]])
        moved_funds = decision.invoice.funds != as_domain(row).funds
        if decision.changed or moved_funds or extra_events.get(row["id"]):
            changed.append((row, decision))
    if not changed:
        return []
    await conn.executemany(
        """UPDATE invoices SET state = $2, amount_received = $3, amount_pending = $4, update_time = $5
            WHERE id = $1""",
        [
            (
                row["id"],
                d.invoice.state.value,
                d.invoice.funds.confirmed,
                d.invoice.funds.confirming + d.invoice.funds.pending,
                now,
            )
            for row, d in changed
        ],
    )
    ids = [row["id"] for row, _ in changed]
    fresh = {
        r["id"]: r
        for r in await conn.fetch("SELECT * FROM invoices WHERE id = ANY($1::text[])", ids)
    }
    payments = await payments_of(conn, ids)
    outbox: list[NewEvent] = []
    for row, decision in changed:
        current = fresh[row["id"]]
        types: list[tuple[str, sm.State]] = [(s.event_type, s.state) for s in decision.steps]
        for extra in extra_events.get(row["id"], []):
            if extra not in {t for t, _ in types}:
                types.insert(0, (extra, decision.invoice.state))
        for event_type, state in types:
            snapshot = render.invoice(current, payments[row["id"]], head_height, state)
            outbox.append(
                NewEvent(
                    event_type,
                    row["merchant_id"],
                    snapshot.name,
                    snapshot.SerializeToString(deterministic=True),
                )
            )
    await append(conn, outbox)
    return outbox


def snapshot_event(event_type: str, row: asyncpg.Record, payments: Sequence[Any] = ()) -> NewEvent:
    snapshot = render.invoice(row, payments)
    return NewEvent(
        event_type,
        row["merchant_id"],
        snapshot.name,
        snapshot.SerializeToString(deterministic=True),
    )
