"""Voids pending ledger transfers whose timeout has passed.

A pending transfer past its timeout is voided lazily by any batch that
touches it (core.ledger.rules), and in any case by this periodic pass, so
its reserved amount is released even if nobody asks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg

from core.ledger import store

log = logging.getLogger("kassa.core.ledger")


async def run(pool: asyncpg.Pool, clock: Callable[[], datetime], interval_s: float) -> None:
    while True:
        try:
            async with pool.acquire() as conn:
                while await store.expire_due(conn, clock()) > 0:
                    pass
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("ledger expiry pass failed", extra={"error": str(exc)})
        await asyncio.sleep(interval_s)
