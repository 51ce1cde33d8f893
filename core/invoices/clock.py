"""The core's clock: expires invoices whose time ran out (and turns short ones
underpaid).

Deposit addresses stay watched after the late-payment window closes: funds
that arrive then are recorded and parked on the invoice (core/invoices/state.py),
never dropped, so the clock forgets no address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg

from core.invoices import lifecycle
from core.invoices import state as sm
from core.leadership.fence import Fence

log = logging.getLogger("kassa.core.expiry")
BATCH = 500
# The invoices the clock may move, past their deadline, a batch after an id:
# awaiting ones may expire, detected/confirming ones may turn underpaid. The
# partial index invoices_expiring (migration 0019) has this predicate, so a
# pass reads only what is due instead of every invoice.
DUE = """SELECT id FROM invoices
 WHERE state IN ('awaiting_payment', 'detected', 'confirming')
   AND expire_time <= $1 AND id > $2
 ORDER BY id LIMIT $3"""


async def expire_due(pool: asyncpg.Pool, now: datetime, fence: Fence | None = None) -> int:
    """One pass: lets every invoice past its deadline decide; returns how many moved.

    With a fence (this replica leads the clock, core/leadership), each batch
    commits only while its epoch is current."""
    moved = 0
    after = ""
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if fence is not None:
                await fence.check(conn)
            ids = [r["id"] for r in await conn.fetch(DUE, now, after, BATCH)]
            if not ids:
                return moved
            rows = await lifecycle.lock_invoices(conn, ids)
            events: dict[str, sm.Event] = {r["id"]: sm.ClockTick(now) for r in rows}
            applied = await lifecycle.apply(conn, rows, events, now)
        moved += sum(1 for d in applied.decisions.values() if d.changed)
        after = ids[-1]


async def run(
    pool: asyncpg.Pool,
    clock: Callable[[], datetime],
    interval_s: float,
    fence: Fence | None = None,
) -> None:
    while True:
        now = clock()
        try:
            count = await expire_due(pool, now, fence)
            if count:
                log.info("invoices moved by the clock", extra={"count": count})
        except (asyncpg.PostgresError, OSError):
            log.exception("expiry pass failed; retrying")
        await asyncio.sleep(interval_s)
