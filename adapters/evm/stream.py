"""One client's StreamBlocks: resume, backfill, follow, undo on reorgs.

Each stream keeps its own last sent block and a window of the blocks it sent
(newest last). Every block it sends must name the last one as parent; when
the node's next block does not, the stream finds the newest block of its
window that is still canonical, sends Undo down to it and carries on from
there. So heights are never skipped nor sent twice without an Undo between,
whatever the node does — reorgs, a failover to a node that is behind, or a
head that briefly goes backwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.evm import logs
from adapters.evm.ancestry import Cursor, common_ancestor, extends
from adapters.evm.blocks import BlockFetcher, BlockGone, FetchedBlock, transfer_proto
from adapters.evm.errors import ServiceError
from adapters.evm.heads import HeadTracker
from adapters.evm.normalise import quantity
from adapters.evm.pending import PendingSubscriber
from adapters.evm.rpc import NodeUnavailable, RpcError
from kassa.chain.v1 import adapter_pb2 as pb

# How many heights one canonical-hash batch checks while looking for an ancestor.
ANCESTOR_BATCH = 32
# Transfers per Pending message: keeps each message far below gRPC's limits.
PENDING_CHUNK = 1000


class SeenBlocks:
    """hash → (height, parent hash) of blocks the adapter fetched recently,
    shared by all streams: lets a resume from a block the node has dropped
    still walk back to its ancestor."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def add(self, block: FetchedBlock) -> None:
        self._blocks[block.cursor.hash] = (block.cursor.height, block.parent_hash)
        self._blocks.move_to_end(block.cursor.hash)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)

    def parent(self, block_hash: str) -> tuple[int, str] | None:
        return self._blocks.get(block_hash)


class BlockStream:
    def __init__(
        self,
        fetcher: BlockFetcher,
        heads: HeadTracker,
        seen: SeenBlocks,
        heartbeat_interval_s: float,
        window_blocks: int,
        retry_interval_s: float,
        stopping: asyncio.Event,
        pending: PendingSubscriber | None = None,
    ) -> None:
        self.fetcher = fetcher
        # Mempool sightings for a stream that asked for them (include_pending).
        self.pending = pending
        self.heads = heads
        self.seen = seen
        self.heartbeat_interval_s = heartbeat_interval_s
        self.window_blocks = window_blocks
        self.retry_interval_s = retry_interval_s
        self.stopping = stopping
        self.sent: deque[Cursor] = deque(maxlen=window_blocks)
        self._next_heartbeat = 0.0

    def _heartbeat(self, head: Cursor | None = None) -> pb.BlockEvent:
        head = head or self.heads.head
        assert head is not None
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval_s
        now = Timestamp()
        now.GetCurrentTime()
        return pb.BlockEvent(
            head=pb.Head(head=pb.BlockCursor(height=head.height, hash=head.hash), observe_time=now)
        )

    async def _wait(self, changed: asyncio.Event) -> None:
        """Until the head changes, the next heartbeat is due or the server stops."""
        delay_s = max(0.0, self._next_heartbeat - time.monotonic())
        waits = [asyncio.create_task(changed.wait()), asyncio.create_task(self.stopping.wait())]
        if self.pending is not None:
            waits.append(asyncio.create_task(self.pending.ready.wait()))
        try:
            await asyncio.wait(waits, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if self.stopping.is_set():
            raise ServiceError(
                grpc.StatusCode.UNAVAILABLE,
                "SHUTTING_DOWN",
                "the adapter is shutting down; resume from your cursor",
            )

    async def events(
        self, from_cursor: Cursor | None, locator: Sequence[Cursor]
    ) -> AsyncIterator[pb.BlockEvent]:
        await self.heads.current()
        if from_cursor is None:
            # The client learns the head first; blocks follow from that head + 1.
            # Taken before the yield: the head may move while the client reads
            # the heartbeat, and reading it after would skip a height.
            last = self.heads.head
            assert last is not None
            yield self._heartbeat(last)
        else:
            last = from_cursor
            async for event in self._resume(from_cursor, locator):
                if event.HasField("undo"):
                    last = Cursor(event.undo.to_cursor.height, event.undo.to_cursor.hash)
                yield event
        self.sent.append(last)
        async for event in self._follow(last):
            yield event

    async def _resume(
        self, cursor: Cursor, locator: Sequence[Cursor]
    ) -> AsyncIterator[pb.BlockEvent]:
        """Nothing if cursor is canonical; else Undo to the common ancestor."""
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval_s
        while True:
            changed = self.heads.changed()
            head = self.heads.head
            assert head is not None
            if cursor.height <= head.height:
                canonical = await self.fetcher.canonical_hashes(
                    [c.height for c in (cursor, *locator) if c.height <= head.height]
                )
                if canonical.get(cursor.height) == cursor.hash:
                    return
                break
            # Above the head: wait for the chain to get there, unless the node
            # knows the block as a side-chain one (then it can never become
            # canonical at that height without a reorg: treat it as one now).
            known = await self.fetcher.header_by_hash(cursor.hash)
            if known is not None:
                canonical = await self.fetcher.canonical_hashes(
                    [c.height for c in locator if c.height <= head.height]
                )
                break
            if time.monotonic() >= self._next_heartbeat:
                yield self._heartbeat()
            await self._wait(changed)
        ancestor = common_ancestor(locator, canonical)
        if ancestor is None:
            ancestor = await self._walk_back(cursor)
        if ancestor is None:
            raise ServiceError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "CURSOR_NOT_FOUND",
                f"block {cursor.height} {cursor.hash} is not canonical and no common ancestor "
                f"was found within {self.window_blocks} blocks; resume from an older cursor "
                "or send a longer locator",
                metadata={"height": str(cursor.height), "hash": cursor.hash},
            )
        logs.info(
            "stream_resume_undo",
            from_height=cursor.height,
            to_height=ancestor.height,
            to_hash=ancestor.hash,
        )
        yield pb.BlockEvent(
            undo=pb.Undo(
                to_cursor=pb.BlockCursor(height=ancestor.height, hash=ancestor.hash),
                from_height=cursor.height,
            )
        )

    async def _walk_back(self, cursor: Cursor) -> Cursor | None:
        """Follows parent hashes from a non-canonical block (from the shared
        window, else the node) until one is canonical, within the window."""
        block_hash = cursor.hash
        pending: list[Cursor] = []
        for _ in range(self.window_blocks):
            known = self.seen.parent(block_hash)
            if known is None:
                header = await self.fetcher.header_by_hash(block_hash)
                if header is None:
                    break
                known = (quantity(header["number"]), str(header["parentHash"]).lower())
            height, parent_hash = known
            if height == 0:
                break
            pending.append(Cursor(height - 1, parent_hash))
            block_hash = parent_hash
            if len(pending) == ANCESTOR_BATCH:
                found = await self._first_canonical(pending)
                if found is not None:
                    return found
                pending = []
        return await self._first_canonical(pending) if pending else None

    async def _first_canonical(self, candidates: Sequence[Cursor]) -> Cursor | None:
        canonical = await self.fetcher.canonical_hashes(c.height for c in candidates)
        return common_ancestor(candidates, canonical)

    def _pending_events(self) -> list[pb.BlockEvent]:
        if self.pending is None or not self.pending.ready.is_set():
            return []
        transfers = self.pending.take()
        if self.pending.lost:
            logs.warning("stream_pending_lost", transfers=self.pending.lost)
            self.pending.lost = 0
        now = Timestamp()
        now.GetCurrentTime()
        return [
            pb.BlockEvent(
                pending=pb.Pending(
                    transfers=[transfer_proto(t) for t in transfers[i : i + PENDING_CHUNK]],
                    observe_time=now,
                )
            )
            for i in range(0, len(transfers), PENDING_CHUNK)
        ]

    async def _follow(self, last: Cursor) -> AsyncIterator[pb.BlockEvent]:
        while True:
            changed = self.heads.changed()
            head = self.heads.head
            assert head is not None
            if time.monotonic() >= self._next_heartbeat:
                yield self._heartbeat()
            for event in self._pending_events():
                yield event
            try:
                if last.height < head.height:
                    block = await self.fetcher.by_number(last.height + 1)
                    if block is not None:
                        if extends(last, block.parent_hash, block.cursor.height):
                            self.seen.add(block)
                            yield pb.BlockEvent(block=block.to_proto())
                            last = block.cursor
                            self.sent.append(last)
                            continue
                        undo = await self._undo(last)
                        last = Cursor(undo.to_cursor.height, undo.to_cursor.hash)
                        yield pb.BlockEvent(undo=undo)
                        continue
                elif head != last:
                    # At (or past) the head: our tip may have been replaced by a
                    # chain of the same height, or the chain got shorter.
                    canonical = await self.fetcher.canonical_hashes([last.height])
                    if canonical[last.height] != last.hash:
                        undo = await self._undo(last)
                        last = Cursor(undo.to_cursor.height, undo.to_cursor.hash)
                        yield pb.BlockEvent(undo=undo)
                        continue
            except (NodeUnavailable, RpcError, BlockGone) as exc:
                # The stream's state is `last`: after the node is back it goes
                # on from there, so an outage costs time, never a height.
                logs.warning("stream_node_error", error=str(exc), last_height=last.height)
                await asyncio.sleep(self.retry_interval_s)
                continue
            await self._wait(changed)

    async def _undo(self, last: Cursor) -> pb.Undo:
        """The Undo from `last` down to the newest sent block still canonical."""
        candidates = list(reversed(self.sent))
        for start in range(0, len(candidates), ANCESTOR_BATCH):
            chunk = candidates[start : start + ANCESTOR_BATCH]
            ancestor = await self._first_canonical(chunk)
            if ancestor is not None:
                while self.sent and self.sent[-1].height > ancestor.height:
                    self.sent.pop()
                logs.info(
                    "stream_reorg_undo",
                    from_height=last.height,
                    to_height=ancestor.height,
                    to_hash=ancestor.hash,
                )
                return pb.Undo(
                    to_cursor=pb.BlockCursor(height=ancestor.height, hash=ancestor.hash),
                    from_height=last.height,
                )
        raise ServiceError(
            grpc.StatusCode.ABORTED,
            "REORG_DEEPER_THAN_WINDOW",
            f"a reorg replaced every one of the last {len(candidates)} blocks this stream sent; "
            "reconnect with your cursor and a block locator",
            metadata={"height": str(last.height), "hash": last.hash},
        )
