"""Coalesces concurrent CreateTransfers requests into shared transactions.

One posting costs a few round trips and a commit whatever its size, so
requests that arrive while a transaction is in flight wait for the next one
and share it, as TigerBeetle batches its clients' requests. Requests are
concatenated in arrival order, which is exactly as if they had run one
after another: a request's linked chain never spans into the next one
(a request that ends with an open chain runs alone and fails as such).

A merged group that fails as a whole (an error from the database, not a
rule's refusal, which is a per-transfer result) is posted again one request
at a time, so that only the request that causes the failure fails: the
attacker here is one client whose requests would otherwise fail every
bystander's transfers merged with them. A database outage is not retried
this way: it fails the whole group at once, as it would fail each request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg

from core.ledger import store
from core.ledger.guarded import KnownBalances
from core.ledger.rules import Result, Transfer, TransferFlags
from core.store.outage import database_unavailable

_Item = tuple[Sequence[Transfer], asyncio.Future[list[Result]]]


class Poster:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Callable[[], datetime],
        # One writer, as TigerBeetle: requests arriving while a transaction is
        # in flight all join the next one. Two writers halved the groups and
        # queued on the same hot account's row lock (single-transfer RPCs, 32
        # clients: 1,809/s with one writer, 1,116/s with two, 556/s with eight).
        workers: int = 1,
        max_transfers: int = 8192,
        # Small groups in one statement on totals the writer already knows
        # (core.ledger.guarded): one round trip instead of four. False posts
        # every group through the locking transaction (kept for A/B runs).
        guarded: bool = True,
    ) -> None:
        assert not (guarded and workers > 1), "the known totals assume one writer"
        self.pool = pool
        self.known = KnownBalances() if guarded else None
        self.clock = clock
        self.max_transfers = max_transfers
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._workers = workers
        self.groups = 0  # groups posted, for the benchmark (its requests / groups)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"ledger poster {i}")
            for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def submit(self, batch: Sequence[Transfer]) -> list[Result]:
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((batch, future))  # unbounded: never waits
        return await future

    def _take(self, first: _Item) -> list[_Item]:
        group = [first]
        size = len(first[0])
        if first[0] and first[0][-1].flags & TransferFlags.LINKED:
            return group
        while size < self.max_transfers and not self._queue.empty():
            batch = self._queue._queue[0][0]  # type: ignore[attr-defined]  # peek
            if size + len(batch) > self.max_transfers or (
                batch and batch[-1].flags & TransferFlags.LINKED
            ):
                break
            group.append(self._queue.get_nowait())
            size += len(batch)
        return group

    async def _run(self) -> None:
        # Each worker keeps its connection while it works: the pool's acquire
        # and release (a reset query) were two of a posting's six round trips,
        # and every round trip waits its turn on an event loop busy serving
        # RPCs. After a failure the connection goes back (reset) for a fresh one.
        while True:
            group = self._take(await self._queue.get())
            try:
                conn = await self.pool.acquire()
            except Exception as exc:  # no database: fail fast, as a posting would
                _fail(group, exc)
                continue
            try:
                while await self._post(conn, group) and not conn.is_closed():
                    group = self._take(await self._queue.get())
            finally:
                await self.pool.release(conn)

    async def _post(self, conn: asyncpg.Connection, group: list[_Item]) -> bool:
        """Posts one group and answers its waiters; False if it failed."""
        self.groups += 1
        merged = [t for batch, _ in group for t in batch]
        try:
            if self.known is not None:
                outcome = await self.known.create_transfers(conn, merged, self.clock())
            else:
                outcome = await store.create_transfers(conn, merged, self.clock())
        except Exception as exc:
            if len(group) == 1 or database_unavailable(exc):
                _fail(group, exc)  # every waiter learns of the failure
            else:
                await self._post_alone(group)
            return False
        start = 0
        for batch, future in group:
            if not future.done():
                future.set_result(outcome.results[start : start + len(batch)])
            start += len(batch)
        return True

    async def _post_alone(self, group: list[_Item]) -> None:
        """Posts each request of a failed group on its own: only the offender fails."""
        for batch, future in group:
            if future.done():  # its caller went away
                continue
            try:
                async with self.pool.acquire() as conn:
                    outcome = await store.create_transfers(conn, batch, self.clock())
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(outcome.results)


def _fail(group: list[_Item], exc: BaseException) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(exc)
