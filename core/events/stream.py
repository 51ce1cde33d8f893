"""Reads the outbox in sequence order and follows it as new events commit.

One LISTEN connection per process wakes every open stream. Streams that
have caught up read the shared in-memory `Tail` (one database read, and one
rendering, serves them all); a consumer that falls behind it reads
PostgreSQL itself, so it costs a query, never memory in the core. Each
stream reads ahead a bounded batch; a consumer that stops taking events
leaves it full, and `relay` cuts it off after a stall rather than hold
anything for it (it resumes from its cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import asyncpg

from core.events.outbox import NOTIFY_CHANNEL

log = logging.getLogger("kassa.core.events")
BATCH = 500


class Positions:
    """Where this process's open streams and its shared tail have read the
    outbox to, for the metrics sampler (core/metrics.py): a count and a
    maximum are exported, never a label per stream."""

    def __init__(self) -> None:
        self.tail_sequence: int | None = None  # the shared Tail's last read (None: no tail)
        self._open: dict[int, int] = {}  # stream token -> its read cursor
        self._next = 0

    @contextlib.contextmanager
    def opened(self, after_sequence: int) -> Iterator[int]:
        """Registers one open stream for as long as the block runs; yields its token."""
        token = self._next
        self._next += 1
        self._open[token] = after_sequence
        try:
            yield token
        finally:
            del self._open[token]

    def moved(self, token: int, sequence: int) -> None:
        if token in self._open:
            assert sequence >= self._open[token], "a stream's cursor only moves forward"
            self._open[token] = sequence

    def streams(self) -> list[int]:
        """The read cursor of every open stream."""
        return list(self._open.values())


POSITIONS = Positions()


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


async def read(
    pool: asyncpg.Pool, after: int, merchant_id: str | None, types: Sequence[str], limit: int
) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            """SELECT sequence, id, type, merchant_id, resource_type, payload, create_time
                 FROM events
                WHERE sequence > $1 AND ($2::text IS NULL OR merchant_id = $2)
                  AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[]))
                ORDER BY sequence LIMIT $4""",
            after,
            merchant_id,
            list(types),
            limit,
        )
    return rows


@dataclass(frozen=True, slots=True)
class TailEvent:
    sequence: int
    merchant_id: str
    type: str
    # Rendered once for every consumer (core.events.stream.Tail's `render`).
    message: object


class Tail:
    """The newest events of the outbox in memory, shared by every stream.

    A stream that has caught up reads here instead of querying: one database
    read (single-flight, under a lock) brings each new batch for all of them,
    rendered once. Sequences are gapless and commit-ordered (outbox.py), so
    the tail is one contiguous run [first, last]; a stream behind it reads
    PostgreSQL itself until it reaches it. Bounded: the oldest are dropped.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        render: Callable[[asyncpg.Record], object],
        capacity: int = 10_000,
    ) -> None:
        assert capacity > 0
        self.pool = pool
        self.render = render
        self.capacity = capacity
        self._events: list[TailEvent] = []
        self._last: int | None = None  # highest sequence read (None: not started)
        self._lock = asyncio.Lock()

    @property
    def last_sequence(self) -> int | None:
        return self._last

    @property
    def first_sequence(self) -> int:
        """The oldest sequence held (last + 1 when empty or not started)."""
        last = self._last or 0
        return last - len(self._events) + 1

    def after(
        self, cursor: int, merchant_id: str | None, types: Sequence[str], limit: int
    ) -> list[TailEvent] | None:
        """Matching events after `cursor` (at most `limit`), or None when the
        cursor is older than the tail holds (the caller reads the database)."""
        if self._last is None:
            return None
        first = self._last - len(self._events) + 1
        if cursor < first - 1:
            return None
        out: list[TailEvent] = []
        wanted = set(types)
        for event in self._events[cursor - first + 1 :]:
            assert event.sequence > cursor
            if (merchant_id is None or event.merchant_id == merchant_id) and (
                not wanted or event.type in wanted
            ):
                out.append(event)
                if len(out) == limit:
                    break
        return out

    async def refresh(self) -> None:
        """Reads what committed since the last read, once for all waiters."""
        seen = self._last
        async with self._lock:
            if self._last != seen and seen is not None:
                return  # another stream read it while we waited for the lock
            async with self.pool.acquire() as conn:
                if self._last is None:
                    # Start at the head: what is older is read by each stream itself.
                    self._last = int(
                        await conn.fetchval("SELECT coalesce(max(sequence), 0) FROM events")
                    )
                while True:
                    rows = await conn.fetch(
                        """SELECT sequence, id, type, merchant_id, resource_type, payload,
                                  create_time
                             FROM events WHERE sequence > $1 ORDER BY sequence LIMIT $2""",
                        self._last,
                        BATCH,
                    )
                    for row in rows:
                        assert row["sequence"] == self._last + 1, "the outbox is gapless"
                        self._events.append(
                            TailEvent(
                                row["sequence"],
                                row["merchant_id"],
                                row["type"],
                                self.render(row),
                            )
                        )
                        self._last = row["sequence"]
                    if len(self._events) > self.capacity:
                        del self._events[: len(self._events) - self.capacity]
                    if len(rows) < BATCH:
                        break
            POSITIONS.tail_sequence = self._last


async def follow(
    notifier: OutboxNotifier,
    tail: Tail,
    after_sequence: int,
    merchant_id: str | None,
    types: Sequence[str],
    size: int,
    token: int | None = None,
) -> AsyncIterator[list[TailEvent]]:
    """Every matching event after `after_sequence`, then new ones, forever, in
    batches of at most `size`: from PostgreSQL while behind the shared tail,
    from the tail once caught up (then one read serves every stream).
    `token` (Positions.opened) reports the cursor to the metrics sampler.
    Behind the tail it reads through the tail's own pool, so the edge
    (core/api/event_service.py) holds only the tail."""
    cursor = after_sequence
    while True:
        if token is not None:
            POSITIONS.moved(token, cursor)
        generation = notifier.generation
        if tail.last_sequence is None or tail.last_sequence < cursor:
            await tail.refresh()
        found = tail.after(cursor, merchant_id, types, size)
        if found is None:  # behind the tail: read it ourselves
            # Everything below the tail's first event committed before this read.
            floor = tail.first_sequence
            rows = await read(tail.pool, cursor, merchant_id, types, size)
            if rows:
                cursor = rows[-1]["sequence"]
                yield [
                    TailEvent(r["sequence"], r["merchant_id"], r["type"], tail.render(r))
                    for r in rows
                ]
            if len(rows) < size:
                # All of ours up to the tail are sent: continue from the tail.
                cursor = max(cursor, floor - 1)
            continue
        if found:
            cursor = found[-1].sequence
            yield found
            continue
        # Caught up with everything the tail holds (nothing of ours in it).
        assert tail.last_sequence is not None
        cursor = max(cursor, tail.last_sequence)
        if token is not None:
            POSITIONS.moved(token, cursor)
        await notifier.wait(generation)
        await tail.refresh()


class _Watchdog:
    """Expires `timer` once the send under way has taken `limit_s`.

    Each send only notes when it `began`; one timer per limit_s checks it.
    Rescheduling the timeout per send instead (a heap push and a cancelled
    handle each) was a third of relay's CPU."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timer: asyncio.Timeout, limit_s: float):
        self.loop = loop
        self.timer = timer
        self.limit_s = limit_s
        self.began = loop.time()
        self._handle = loop.call_at(self.began + limit_s, self._check)

    def _check(self) -> None:
        deadline = self.began + self.limit_s
        now = self.loop.time()
        if now >= deadline:
            self.timer.reschedule(now)  # expires at once: TimeoutError in the sender
        else:
            self._handle = self.loop.call_at(deadline, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


class ConsumerTooSlow(Exception):
    """The consumer left its buffer full for longer than the stall timeout."""

    def __init__(self, last_sent_sequence: int, buffered: int) -> None:
        super().__init__(f"consumer stalled at sequence {last_sent_sequence}")
        # The highest sequence that may have reached the consumer.
        self.last_sent_sequence = last_sent_sequence
        self.buffered = buffered


async def relay(
    source: AsyncIterator[list[TailEvent]],
    send: Callable[[object], Awaitable[None]],
    buffer_events: int,
    stall_timeout_s: float,
) -> None:
    """Reads ahead (at most `buffer_events` held) and sends in order.

    Raises ConsumerTooSlow when one send does not complete within
    `stall_timeout_s` (the transport's window and the buffer are full: the
    consumer stopped reading). Never returns otherwise; cancel it to stop.
    Sends a batch at a time under one watchdog timer: no task, queue hop
    or timer per event (they were most of a stream's CPU).
    """
    # One batch is being sent while the next is read: together within the bound.
    queue: asyncio.Queue[list[TailEvent]] = asyncio.Queue(maxsize=1)
    queued = [0]  # events read and not yet sent, the batch being sent included

    async def read() -> None:
        async for batch in source:
            assert len(batch) <= max(1, buffer_events // 2), "batches bound the buffer"
            await queue.put(batch)
            queued[0] += len(batch)

    reader = asyncio.create_task(read(), name="events read-ahead")
    getter: asyncio.Future[list[TailEvent]] | None = None
    loop = asyncio.get_running_loop()
    try:
        while True:
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    reader.result()  # the reader failed: raise its error
                    raise AssertionError("the reader follows forever")
                batch = getter.result()
            else:
                batch = queue.get_nowait()
            sent = 0
            try:
                async with asyncio.timeout(None) as timer:
                    watchdog = _Watchdog(loop, timer, stall_timeout_s)
                    try:
                        for event in batch:
                            watchdog.began = loop.time()
                            await send(event.message)
                            sent += 1
                            queued[0] -= 1
                    finally:
                        watchdog.cancel()
            except TimeoutError:
                # The stalled message may still reach the consumer: report it
                # as the highest sequence that may have been sent.
                raise ConsumerTooSlow(batch[sent].sequence, queued[0] - 1) from None
    finally:
        # Cancelled while waiting (the call ended): the getter goes too, or
        # it is destroyed pending when the loop closes.
        for task in (reader, getter):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
