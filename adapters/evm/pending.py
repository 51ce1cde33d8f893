"""The node's mempool, watched once for every stream that asks for it.

Started by the first stream with include_pending, so an adapter whose
consumers only settle on blocks never pays for it. Transaction hashes come
from eth_subscribe("newPendingTransactions") — the hash form, which geth,
erigon, nethermind, reth and anvil all offer — and are fetched in batches of
eth_getTransactionByHash. Without subscriptions, and once after every
(re)connect to catch what arrived while disconnected, the pending block
(eth_getBlockByNumber("pending", true)) is polled instead.

Every hash is fetched and announced at most once while it is among the last
`seen_capacity` hashes, so each stream gets each transaction once. Memory is
bounded everywhere: the hashes waiting to be fetched, the dedupe window and
each stream's backlog drop their oldest entries when full. A sighting lost
that way costs only latency: the block that includes the transaction brings
the transfer anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adapters.evm import logs
from adapters.evm.normalise import Transfer, pending_transfers
from adapters.evm.rpc import NodeUnavailable, RpcClient, RpcError

FETCH_BATCH = 200
QUEUED_HASHES_MAX = 50_000
SEEN_CAPACITY = 200_000
SUBSCRIBER_BACKLOG = 20_000


class SeenHashes:
    """A bounded set of transaction hashes, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._hashes: OrderedDict[str, None] = OrderedDict()

    def add(self, tx_hash: str) -> bool:
        """True the first time a hash is added (within the window)."""
        if tx_hash in self._hashes:
            return False
        self._hashes[tx_hash] = None
        while len(self._hashes) > self.capacity:
            self._hashes.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._hashes)


class PendingSubscriber:
    """One stream's backlog of sightings not yet sent."""

    def __init__(self, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self._transfers: deque[Transfer] = deque(maxlen=backlog)
        self.ready = asyncio.Event()
        self.lost = 0

    def offer(self, transfers: Sequence[Transfer]) -> None:
        overflow = len(self._transfers) + len(transfers) - (self._transfers.maxlen or 0)
        if overflow > 0:
            # A consumer that does not keep up loses its oldest sightings
            # rather than holding the adapter's memory.
            self.lost += min(overflow, len(transfers) + len(self._transfers))
        self._transfers.extend(transfers)
        if self._transfers:
            self.ready.set()

    def take(self) -> list[Transfer]:
        taken = list(self._transfers)
        self._transfers.clear()
        self.ready.clear()
        return taken


class PendingWatcher:
    def __init__(
        self,
        rpc: RpcClient,
        chain_id: int,
        tokens: Iterable[str],
        poll_interval_s: float,
        seen_capacity: int = SEEN_CAPACITY,
    ) -> None:
        self.rpc = rpc
        self.chain_id = chain_id
        self.tokens = frozenset(tokens)
        self.poll_interval_s = poll_interval_s
        self.seen = SeenHashes(seen_capacity)
        self._queued: deque[str] = deque(maxlen=QUEUED_HASHES_MAX)
        self._wake = asyncio.Event()
        self._subscribers: set[PendingSubscriber] = set()
        self._subscribed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self._started = False

    async def ensure_started(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            self._started = True
            self.rpc.add_connected_hook(self._subscribe)
            await self._subscribe()
            self._tasks = [
                asyncio.create_task(self._fetch_forever(), name="pending-fetcher"),
                asyncio.create_task(self._poll_forever(), name="pending-poller"),
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def subscribe(self, backlog: int = SUBSCRIBER_BACKLOG) -> PendingSubscriber:
        subscriber = PendingSubscriber(backlog)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: PendingSubscriber) -> None:
        self._subscribers.discard(subscriber)

    async def _subscribe(self) -> None:
        self._subscribed = False
        try:
            await self.rpc.subscribe("newPendingTransactions", self._notified)
            self._subscribed = True
            logs.info("pending_subscribed", url=self.rpc.current_url)
        except NodeUnavailable as exc:
            logs.warning("pending_subscribe_failed", error=str(exc))
        except RpcError as exc:
            logs.warning(
                "pending_subscription_unavailable",
                error=exc.message,
                fallback="polling the pending block",
                poll_interval_s=self.poll_interval_s,
            )
        # What entered the mempool while we were not subscribed.
        with contextlib.suppress(NodeUnavailable, RpcError):
            await self._poll_once()

    def _notified(self, result: Any) -> None:
        if not isinstance(result, str):
            return
        tx_hash = result.lower()
        if self.seen.add(tx_hash):
            self._queued.append(tx_hash)
            self._wake.set()

    async def _fetch_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queued:
                hashes = [
                    self._queued.popleft() for _ in range(min(FETCH_BATCH, len(self._queued)))
                ]
                try:
                    answers = await self.rpc.batch(
                        [("eth_getTransactionByHash", [h]) for h in hashes]
                    )
                except NodeUnavailable as exc:
                    logs.warning("pending_fetch_failed", error=str(exc), transactions=len(hashes))
                    self._queued.extendleft(reversed(hashes))
                    await asyncio.sleep(self.poll_interval_s)
                    continue
                # None: already gone from the mempool; an error: skip it, the
                # block brings the transfer if it is mined.
                self._publish(a for a in answers if isinstance(a, Mapping))

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            if self._subscribed:
                continue
            try:
                await self._poll_once()
            except (NodeUnavailable, RpcError) as exc:
                logs.warning("pending_poll_failed", error=str(exc))

    async def _poll_once(self) -> None:
        block = await self.rpc.call("eth_getBlockByNumber", "pending", True)
        if not block:
            return
        fresh = []
        for tx in block.get("transactions") or []:
            if (
                isinstance(tx, Mapping)
                and isinstance(tx.get("hash"), str)
                and self.seen.add(str(tx["hash"]).lower())
            ):
                fresh.append(tx)
        self._publish(fresh)

    def _publish(self, transactions: Iterable[Mapping[str, Any]]) -> None:
        transfers = [
            t for tx in transactions for t in pending_transfers(self.chain_id, tx, self.tokens)
        ]
        if not transfers:
            return
        for subscriber in self._subscribers:
            subscriber.offer(transfers)
