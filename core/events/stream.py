"""Reads the outbox in sequence order and follows it as new events commit.

One LISTEN connection per process wakes every open stream; streams then read
from PostgreSQL themselves, so a consumer that falls behind costs a query,
never memory in the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import asyncpg

from core.events.outbox import NOTIFY_CHANNEL

log = logging.getLogger("kassa.core.events")
BATCH = 500


class OutboxNotifier:
    """Wakes waiting streams when events commit (LISTEN/NOTIFY), with a poll
    interval as a safety net should a notification be lost with its connection."""

    def __init__(self, dsn: str, poll_interval_s: float = 1.0) -> None:
        self.dsn = dsn
        self.poll_interval_s = poll_interval_s
        self._generation = 0
        self._changed = asyncio.Condition()
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(NOTIFY_CHANNEL, self._on_notify)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    def _on_notify(self, *_: object) -> None:
        asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

    @property
    def generation(self) -> int:
        return self._generation

    async def wait(self, seen_generation: int) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._generation != seen_generation),
                    self.poll_interval_s,
                )


async def follow(
    pool: asyncpg.Pool,
    notifier: OutboxNotifier,
    after_sequence: int,
    merchant_id: str | None,
    types: Sequence[str],
) -> AsyncIterator[asyncpg.Record]:
    """Every matching event after `after_sequence`, then new ones, forever."""
    cursor = after_sequence
    while True:
        generation = notifier.generation
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT sequence, id, type, merchant_id, payload, create_time FROM events
                    WHERE sequence > $1 AND ($2::text IS NULL OR merchant_id = $2)
                      AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[]))
                    ORDER BY sequence LIMIT $4""",
                cursor,
                merchant_id,
                list(types),
                BATCH,
            )
        for row in rows:
            yield row
            cursor = row["sequence"]
        if len(rows) < BATCH:
            await notifier.wait(generation)
