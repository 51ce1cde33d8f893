"""Expires invoices whose time ran out, driven by the core's clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg

from core import lifecycle
from core.chain.index import ActiveInvoiceIndex
from core.domain import invoice_state as sm

log = logging.getLogger("kassa.core.expiry")
BATCH = 500


async def expire_due(pool: asyncpg.Pool, index: ActiveInvoiceIndex, now: datetime) -> int:
    """One pass: moves every awaiting invoice past its expiry; returns how many."""
    expired = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            ids = [
                r["id"]
                for r in await conn.fetch(
                    """SELECT id FROM invoices WHERE state = 'awaiting_payment' AND expire_time <= $1
                    ORDER BY expire_time LIMIT $2""",
                    now,
                    BATCH,
                )
            ]
            if not ids:
                return expired
            rows = await lifecycle.lock_invoices(conn, ids)
            events: dict[str, sm.Event] = {r["id"]: sm.ClockTick(now) for r in rows}
            await lifecycle.apply(conn, rows, events, now)
            gone = await conn.fetch(
                "SELECT deposit_address FROM invoices WHERE id = ANY($1::text[]) AND state = 'expired'",
                ids,
            )
        for r in gone:
            index.remove(r["deposit_address"])
        expired += len(gone)
        if len(ids) < BATCH:
            return expired


async def run(
    pool: asyncpg.Pool, index: ActiveInvoiceIndex, clock: Callable[[], datetime], interval_s: float
) -> None:
    while True:
        try:
            count = await expire_due(pool, index, clock())
            if count:
                log.info("invoices expired", extra={"count": count})
        except (asyncpg.PostgresError, OSError):
            log.exception("expiry pass failed; retrying")
        await asyncio.sleep(interval_s)
