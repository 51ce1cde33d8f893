"""Reads the outbox in sequence order and follows it as new events commit.

One LISTEN connection per process wakes every open stream; streams then read
from PostgreSQL themselves, so a consumer that falls behind costs a query,
never memory in the core. Each stream reads ahead into a bounded buffer;
a consumer that stops taking events leaves it full, and `relay` cuts it off
after a stall rather than hold anything for it (it resumes from its cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

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
    limit: Callable[[], int] = lambda: BATCH,
) -> AsyncIterator[asyncpg.Record]:
    """Every matching event after `after_sequence`, then new ones, forever.

    `limit` says how many rows the caller can take now (its free buffer)."""
    cursor = after_sequence
    while True:
        generation = notifier.generation
        want = max(1, min(BATCH, limit()))
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT sequence, id, type, merchant_id, resource_type, payload, create_time
                     FROM events
                    WHERE sequence > $1 AND ($2::text IS NULL OR merchant_id = $2)
                      AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[]))
                    ORDER BY sequence LIMIT $4""",
                cursor,
                merchant_id,
                list(types),
                want,
            )
        for row in rows:
            yield row
            cursor = row["sequence"]
        if len(rows) < want:
            await notifier.wait(generation)


class ConsumerTooSlow(Exception):
    """The consumer left its buffer full for longer than the stall timeout."""

    def __init__(self, last_sent_sequence: int, buffered: int) -> None:
        super().__init__(f"consumer stalled at sequence {last_sent_sequence}")
        # The highest sequence that may have reached the consumer.
        self.last_sent_sequence = last_sent_sequence
        self.buffered = buffered


async def relay(
    rows: Callable[[Callable[[], int]], AsyncIterator[asyncpg.Record]],
    send: Callable[[asyncpg.Record], Awaitable[None]],
    buffer_events: int,
    stall_timeout_s: float,
) -> None:
    """Reads ahead into a buffer of `buffer_events` and sends in order.

    Raises ConsumerTooSlow when one send does not complete within
    `stall_timeout_s` (the transport's window and the buffer are full: the
    consumer stopped reading). Never returns otherwise; cancel it to stop.
    """
    buffer: asyncio.Queue[asyncpg.Record] = asyncio.Queue(maxsize=buffer_events)

    async def read() -> None:
        async for row in rows(lambda: buffer.maxsize - buffer.qsize()):
            await buffer.put(row)

    reader = asyncio.create_task(read(), name="events read-ahead")
    getter: asyncio.Future[asyncpg.Record] | None = None
    try:
        while True:
            getter = asyncio.ensure_future(buffer.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                reader.result()  # the reader failed: raise its error
                raise AssertionError("the reader follows forever")
            row = getter.result()
            try:
                await asyncio.wait_for(send(row), stall_timeout_s)
            except TimeoutError:
                # The stalled message may still reach the consumer: report it
                # as the highest sequence that may have been sent.
                raise ConsumerTooSlow(row["sequence"], buffer.qsize()) from None
    finally:
        # Cancelled while waiting (the call ended): the getter goes too, or
        # it is destroyed pending when the loop closes.
        for task in (reader, getter):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
