"""Applies a chain's blocks and undos to the database, one transaction each.

A block's payments, the invoices' state changes, their outbox events and the
chain cursor commit together; so do an undo's reversals. After a crash the
core resumes from the stored cursor and nothing is applied twice.

Mempool sightings (the adapter's Pending events) become payments with block
NULL: status 'pending', or 'confirmed' at once — posted in the ledger — for
an invoice whose tier allows zero-conf (confirmations_required = 0). When
the transaction is mined, the block's row for the same (chain, tx_hash,
transfer_index) takes the sighting over, keeping first_seen_time. Sightings
that the block of their transaction does not repeat (reverted, or a token
that logs another Transfer first) and those never mined within the chain's
pending_ttl_s are dropped: status 'reorged' with block NULL, kept as
evidence, reversed in the ledger if they were posted.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import asyncpg

from core.chain.index import ActiveInvoiceIndex
from core.invoices import lifecycle
from core.invoices import state as sm
from core.leadership.fence import Fence
from core.ledger import payments as ledger_payments
from core.payments import store as payments
from core.payments.status import PaymentStatus
from kassa.chain.v1 import adapter_pb2 as chain_pb

log = logging.getLogger("kassa.core.chain")
# Applied blocks kept for the resume locator; deeper reorgs are refused by the adapter.
BLOCK_WINDOW = 1024


def _matches(pairs: list[tuple[chain_pb.Transfer, str]]) -> list[payments.Match]:
    return [
        payments.Match(
            t.tx_hash, t.index, invoice_id, t.asset, t.from_address, t.to_address, int(t.amount)
        )
        for t, invoice_id in pairs
    ]


# Blocks being applied in this process right now (one per chain at most), and
# whether the collector was enabled when the first of them started.
_applying = 0
_reenable = False


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pauses the cyclic garbage collector while a block is applied.

    A 5,000-transfer block allocates ~330,000 container objects (records,
    rows, decisions, snapshots) that live until the block ends: they went
    through ~450 young collections and 3-4 full ones per block, each of which
    traversed them again — 0.16-1.74 s of a block's wall time, measured at
    load 5-9 (docs/performance.md, Ingest). None of them is cyclic garbage
    (reference counting frees them when the block returns), so the pause
    keeps nothing alive that a collection would have freed. It lasts the
    block only (the process's other tasks run without the collector for that
    long too; their cyclic garbage waits for the next collection) and ends
    however the block ends. Appliers of several chains in one process share
    it: the last one out re-enables the collector, if it was enabled."""
    global _applying, _reenable
    if _applying == 0:
        _reenable = gc.isenabled()
        gc.disable()
    _applying += 1
    try:
        yield
    finally:
        _applying -= 1
        if _applying == 0 and _reenable:
            gc.enable()


async def _ended(task: asyncio.Future[Any]) -> None:
    """Waits for statements running on the block's connection beside the
    client's own work, however that work ended: the connection is theirs until
    they end (a rollback meanwhile would meet a busy connection). Cancelled
    while waiting, it cancels them (asyncpg cancels the statement). Their
    failure is marked seen here; the caller raises it with `task.result()`
    unless its own error is already on its way."""
    if not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            raise
    if not task.cancelled():
        task.exception()


class CursorMismatchError(RuntimeError):
    """The stream skipped or contradicted our cursor: resubscribe from it."""


class ChainApplier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chain: str,
        index: ActiveInvoiceIndex,
        clock: Callable[[], datetime],
    ) -> None:
        self.pool = pool
        self.chain = chain
        self.index = index
        self.clock = clock
        # Set by the leadership guard (core/leadership) while this replica leads
        # the chain: the fence checked in every transaction below, after the
        # cursor lock; the catch-up of invoices other replicas created.
        self.fence: Fence | None = None
        self.catch_up: Callable[[], Awaitable[int]] | None = None

    async def cursor(self) -> tuple[chain_pb.BlockCursor | None, list[chain_pb.BlockCursor]]:
        """The stored cursor and a locator of earlier applied blocks, newest first."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT height, hash FROM chain_blocks WHERE chain = $1 ORDER BY height DESC LIMIT 64",
                self.chain,
            )
            head = await conn.fetchrow(
                "SELECT height, hash FROM chain_cursors WHERE chain = $1", self.chain
            )
        if head is None:
            return None, []
        locator = [
            chain_pb.BlockCursor(height=r["height"], hash=r["hash"])
            for r in rows
            if r["height"] < head["height"]
        ]
        return chain_pb.BlockCursor(height=head["height"], hash=head["hash"]), locator

    async def anchor(self, head: chain_pb.BlockCursor) -> bool:
        """Stores the adapter's head as the cursor of a chain never followed before.

        A core that has applied no block has no cursor: without one, a stream
        after a reconnect starts at the adapter's head *then*, and a block
        mined between the two streams is never applied. Anchored at the first
        head seen, the next stream resumes from it. Returns whether it was
        stored (False: a cursor exists; it is never moved here).
        """
        async with self.pool.acquire() as conn:
            stored = await conn.fetchval(
                """INSERT INTO chain_cursors (chain, height, hash) VALUES ($1, $2, $3)
                   ON CONFLICT (chain) DO NOTHING RETURNING height""",
                self.chain,
                head.height,
                head.hash,
            )
        return stored is not None

    async def apply_block(self, block: chain_pb.Block) -> int:
        """Applies one block; returns how many outbox events it wrote.

        Set-based whatever the block's size: every invoice the block can
        touch is locked in one statement (id order), its payments go in
        through one COPY and one INSERT ... SELECT, the ledger takes one batch
        per step, the invoices one UPDATE and the outbox one COPY.
        """
        with _no_cyclic_gc():
            return await self._apply_block(block)

    async def _apply_block(self, block: chain_pb.Block) -> int:
        if self.catch_up is not None:
            await self.catch_up()
        matches: list[payments.Match] = []
        # Transactions of this block that pay a watched address, reverted or not:
        # their mempool sightings are settled by this block, one way or the other.
        mined: set[str] = set()
        transfers = block.transfers
        # The block's addresses in one lookup_many (the probe loop's names
        # hoisted once, not per call): the whole loop took 13.6 against 17.1 ms
        # for 5,000 transfers with lookup() per transfer (best of 15,
        # alternating; docs/performance.md, Ingest) — all of it client time
        # before the block's first statement.
        found = self.index.lookup_many([t.to_address for t in transfers])
        for t, invoice_id in zip(transfers, found, strict=True):
            if invoice_id is None:
                continue
            tx_hash = t.tx_hash
            mined.add(tx_hash)
            if t.success:
                matches.append(
                    payments.Match(
                        tx_hash,
                        t.index,
                        invoice_id,
                        t.asset,
                        t.from_address,
                        t.to_address,
                        int(t.amount),
                    )
                )
        async with self.pool.acquire() as conn, conn.transaction():
            cursor = await conn.fetchrow(
                "SELECT height, hash FROM chain_cursors WHERE chain = $1 FOR UPDATE", self.chain
            )
            if self.fence is not None:
                await self.fence.check(conn)
            if cursor is not None:
                if block.height <= cursor["height"]:
                    known = await conn.fetchval(
                        "SELECT hash FROM chain_blocks WHERE chain = $1 AND height = $2",
                        self.chain,
                        block.height,
                    )
                    if known == block.hash:
                        return 0  # already applied: a replay after reconnect
                if block.height != cursor["height"] + 1 or block.parent_hash != cursor["hash"]:
                    raise CursorMismatchError(
                        f"block {block.height} {block.hash} does not follow cursor "
                        f"{cursor['height']} {cursor['hash']}"
                    )
            # Every invoice the block can change, locked before anything is
            # written, all at once in id order: its rows are what the payments,
            # the ledger and the decider read below (nothing else writes them
            # while the lock is held), and no other writer of several invoices
            # can interleave its locks with ours.
            due = await payments.invoices_due(conn, self.chain, block.height, sorted(mined))
            changing = {m.invoice_id for m in matches} | due
            locked: dict[str, asyncpg.Record] = {}
            if changing:  # most blocks pay no watched address and confirm nothing
                # A block's set-based statements over thousands of rows look
                # costly to the planner (settlement's read of settle transfers is
                # estimated at millions of rows) and got JIT-compiled: ~20 ms of
                # compilation for a 40 ms statement. Each is a few index probes
                # per row: no JIT.
                await conn.execute("SET LOCAL jit = off")
                locked = {r["id"]: r for r in await lifecycle.lock_invoices(conn, changing)}
            touched: set[str] = set()
            opened: list[asyncpg.Record] = []
            # A match whose invoice is not stored (never committed) has nothing to pay.
            matches = [m for m in matches if m.invoice_id in locked]
            domains: dict[str, sm.Invoice] = {}
            if matches:
                record = asyncio.ensure_future(
                    payments.record_mined(
                        conn, self.chain, block.height, block.hash, matches, locked, self.clock()
                    )
                )
                try:
                    # The decider's view of the locked rows, made while the
                    # server inserts the payments (the client waited idle for
                    # it): ~40 ms of Python for 5,000 invoices, taken out of the
                    # decisions below, which wait for the payments as written.
                    domains = await lifecycle.as_domain_yielding(locked.values())
                finally:
                    await _ended(record)
                inserted = record.result()
                touched.update(r["invoice_id"] for r in inserted)
                opened = [
                    r for r in payments.counted(inserted) if r["status"] == PaymentStatus.CONFIRMING
                ]
            extra: dict[str, list[str]] = {}
            dropped: list[asyncpg.Record] = []
            if mined:
                dropped = await payments.drop_sightings(conn, self.chain, sorted(mined), None)
                for r in dropped:
                    touched.add(r["invoice_id"])
                    extra[r["invoice_id"]] = ["payment.reorged"]
            confirmed = await payments.confirm_due(conn, self.chain, block.height)
            touched.update(r["invoice_id"] for r in confirmed)
            # invoices_due read what these writes change, under the cursor lock
            # every writer of this chain's payments holds. Only a row taken over
            # under another invoice (the same transaction re-executed to another
            # address after a reorg) can name one not locked yet: locked now.
            late = touched - locked.keys()
            if late:
                locked.update((r["id"], r) for r in await lifecycle.lock_invoices(conn, late))

            async def post_ledger() -> None:
                # The ledger follows the payments as written above (pending
                # credits for the block's new payments, then the posts of
                # those reaching their threshold, in that order: one payment
                # may do both in a block when its invoice needs one
                # confirmation). It reads and writes the ledger's tables only,
                # so it runs while the client decides the invoices from the
                # payment rows (~0.1-0.15 s of Python for 5,000 invoices that
                # left the server idle).
                merchants = {
                    r["invoice_id"]: locked[r["invoice_id"]]["merchant_id"] for r in opened
                }
                await ledger_payments.detected(conn, self.chain, opened, self.clock(), merchants)
                await ledger_payments.confirmed(
                    conn, self.chain, payments.counted(confirmed), self.clock()
                )

            written = await self._reconsider(
                conn, touched, block.height, extra, locked, alongside=post_ledger, domains=domains
            )
            # After the settlement's reversal: it refills incoming first.
            await self._reverse_sightings(conn, dropped)
            await self._move_cursor(conn, block)
        return written

    async def apply_pending(self, pending: chain_pb.Pending) -> int:
        """Records mempool sightings to watched addresses; returns events written.

        A sighting of a transaction already recorded (mined, or seen before)
        changes nothing: the block is the authority once there is one, and a
        reorged-out transaction counts again only when it is mined again.
        """
        if self.catch_up is not None:
            await self.catch_up()
        matches = [
            (t, invoice_id)
            for t in pending.transfers
            if (invoice_id := self.index.lookup(t.to_address)) is not None
            and t.amount.isdigit()
            and int(t.amount) > 0
        ]
        if not matches:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialised with blocks and undos of this chain.
            head_height = await conn.fetchval(
                "SELECT height FROM chain_cursors WHERE chain = $1 FOR UPDATE", self.chain
            )
            if self.fence is not None:
                await self.fence.check(conn)
            recorded = await payments.record_sightings(
                conn, self.chain, _matches(matches), self.clock()
            )
            # The merchant accepted the risk: posted now, reversed if it is dropped or reorged.
            settled = [
                r for r in payments.counted(recorded) if r["status"] == PaymentStatus.CONFIRMED
            ]
            await ledger_payments.detected(conn, self.chain, settled, self.clock())
            await ledger_payments.confirmed(conn, self.chain, settled, self.clock())
            touched = {r["invoice_id"] for r in recorded}
            return await self._reconsider(conn, touched, head_height or 0, {})

    async def expire_pending(self, ttl_s: int) -> int:
        """Drops mempool sightings not mined within ttl_s; returns events written."""
        async with self.pool.acquire() as conn:
            # Cheap, lock-free check first (partial index): usually there is nothing.
            due = await payments.sightings_due(conn, self.chain, ttl_s)
            if not due:
                return 0
            async with conn.transaction():
                head_height = await conn.fetchval(
                    "SELECT height FROM chain_cursors WHERE chain = $1 FOR UPDATE", self.chain
                )
                if self.fence is not None:
                    await self.fence.check(conn)
                dropped = await payments.drop_sightings(conn, self.chain, [], ttl_s)
                extra = {r["invoice_id"]: ["payment.reorged"] for r in dropped}
                written = await self._reconsider(conn, set(extra), head_height or 0, extra)
                await self._reverse_sightings(conn, dropped)
        log.warning(
            "mempool sightings expired",
            extra={"chain": self.chain, "payments": len(dropped), "ttl_s": ttl_s},
        )
        return written

    async def _reverse_sightings(
        self, conn: asyncpg.Connection, dropped: list[asyncpg.Record]
    ) -> None:
        """Dropped sightings ('reorged', block NULL) that were posted (zero-conf)
        are reversed — after the invoices were reconsidered, so the settlement's
        reversal has refilled incoming first (it is flagged never-negative)."""
        posted = [r for r in payments.counted(dropped) if r["was"] == PaymentStatus.CONFIRMED]
        await ledger_payments.reorged(conn, self.chain, posted, self.clock())

    async def apply_undo(self, undo: chain_pb.Undo) -> int:
        """Reverts every block above undo.to_cursor; returns events written."""
        target = undo.to_cursor
        async with self.pool.acquire() as conn, conn.transaction():
            cursor = await conn.fetchrow(
                "SELECT height, hash FROM chain_cursors WHERE chain = $1 FOR UPDATE", self.chain
            )
            if self.fence is not None:
                await self.fence.check(conn)
            known = await conn.fetchval(
                "SELECT hash FROM chain_blocks WHERE chain = $1 AND height = $2",
                self.chain,
                target.height,
            )
            if cursor is None or (known is not None and known != target.hash):
                raise CursorMismatchError(
                    f"undo to {target.height} {target.hash} is not on our chain"
                )
            reorged = await payments.reorg_above(conn, self.chain, target.height)
            # Payments still included below the ancestor lose the confirmations above it.
            unconfirmed = await payments.unconfirm_above(conn, self.chain, target.height)
            touched = {r["invoice_id"] for r in reorged} | {r["invoice_id"] for r in unconfirmed}
            extra = {r["invoice_id"]: ["payment.reorged"] for r in reorged}
            # The settlement's reversal first: it refills incoming (from the
            # receivable for funds already refunded or paid out), which is
            # flagged never-negative ...
            written = await self._reconsider(conn, touched, target.height, extra)
            # ... then the ledger follows the payments: void or reverse what was
            # reorged, re-open what lost its confirmations.
            await ledger_payments.reorged(conn, self.chain, payments.counted(reorged), self.clock())
            await ledger_payments.unconfirmed(
                conn, self.chain, payments.counted(unconfirmed), self.clock()
            )
            await conn.execute(
                "DELETE FROM chain_blocks WHERE chain = $1 AND height > $2",
                self.chain,
                target.height,
            )
            await conn.execute(
                "UPDATE chain_cursors SET height = $2, hash = $3, update_time = now() WHERE chain = $1",
                self.chain,
                target.height,
                target.hash,
            )
        log.warning(
            "reorg undone",
            extra={
                "chain": self.chain,
                "to_height": target.height,
                "from_height": undo.from_height,
                "payments": len(reorged),
            },
        )
        return written

    async def _reconsider(
        self,
        conn: asyncpg.Connection,
        ids: set[str],
        head_height: int,
        extra: dict[str, list[str]],
        locked: Mapping[str, asyncpg.Record] | None = None,
        alongside: Callable[[], Awaitable[None]] | None = None,
        domains: Mapping[str, sm.Invoice] | None = None,
    ) -> int:
        """Decides the invoices `ids` from their payments as they now stand.

        `locked`: their rows, already locked by the caller in this transaction
        (otherwise they are locked here). Their payment rows are read once: the
        funds the decider sees and the events' snapshots come from the same rows.
        `alongside`: statements of the caller's that neither read nor write
        the payments or the invoices, run on the connection while the client
        decides (after the payments are read, before the invoices are written).
        `domains`: `lifecycle.as_domain` of some of the locked rows, made already.
        """
        if not ids:
            if alongside is not None:
                await alongside()
            return 0
        if locked is None:
            rows = await lifecycle.lock_invoices(conn, ids)
        else:
            # In id order, as lock_invoices returns them.
            rows = [locked[i] for i in sorted(ids)]
        now_paid = await lifecycle.payments_of(conn, [r["id"] for r in rows])

        def funds_observed(row: asyncpg.Record) -> sm.Event:
            return sm.FundsObserved(lifecycle.funds_of(row, now_paid[row["id"]]))

        beside = None if alongside is None else asyncio.ensure_future(alongside())
        try:
            decided = await lifecycle.decide_yielding(rows, funds_observed, domains)
        finally:
            if beside is not None:
                await _ended(beside)
        if beside is not None:
            beside.result()
        applied = await lifecycle.apply(
            conn,
            rows,
            decided.events,
            self.clock(),
            head_height,
            extra,
            payments_now=now_paid,
            decided=decided,
        )
        return len(applied.events)

    async def _move_cursor(self, conn: asyncpg.Connection, block: chain_pb.Block) -> None:
        await conn.execute(
            """INSERT INTO chain_cursors (chain, height, hash) VALUES ($1, $2, $3)
               ON CONFLICT (chain) DO UPDATE SET height = $2, hash = $3, update_time = now()""",
            self.chain,
            block.height,
            block.hash,
        )
        await conn.execute(
            """INSERT INTO chain_blocks (chain, height, hash, parent_hash) VALUES ($1, $2, $3, $4)
               ON CONFLICT (chain, height) DO UPDATE SET hash = $3, parent_hash = $4""",
            self.chain,
            block.height,
            block.hash,
            block.parent_hash,
        )
        if block.height % 64 == 0:
            await conn.execute(
                "DELETE FROM chain_blocks WHERE chain = $1 AND height < $2",
                self.chain,
                block.height - BLOCK_WINDOW,
            )
