"""Follows one chain through its adapter's block stream, forever.

On any stream error it reconnects from the cursor stored in PostgreSQL, so a
restart of the adapter, of the core or of the node loses and repeats nothing.
It asks for mempool sightings only when a tier of the chain allows zero-conf,
and expires sightings that were never mined (checked between events, which
arrive at least every heartbeat).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from core import metrics
from core.chain.apply import ChainApplier, CursorMismatchError
from core.chain.link import AdapterLink
from core.telemetry.logs import REQUEST_ID, new_request_id
from kassa.chain.v1 import adapter_pb2 as chain_pb
from kassa.chain.v1 import adapter_pb2_grpc as chain_grpc

log = logging.getLogger("kassa.core.chain")
MAX_BACKOFF_S = 10.0


def retry_delay_s(backoff_s: float, failures: int) -> float:
    """backoff_s after the first failure, doubling per failure in a row, at most MAX_BACKOFF_S."""
    assert failures >= 1, failures
    return min(MAX_BACKOFF_S, backoff_s * 2.0 ** min(failures - 1, 16))


class ChainFollower:
    def __init__(
        self,
        applier: ChainApplier,
        adapter: AdapterLink,
        backoff_s: float = 1.0,
        include_pending: bool = False,
        pending_ttl_s: int = 3600,
    ) -> None:
        self.applier = applier
        self.link = adapter
        self.target = adapter.target
        self.backoff_s = backoff_s
        self.include_pending = include_pending
        self.pending_ttl_s = pending_ttl_s
        # Sightings are dropped within a tenth of their TTL after it ends (at most 30 s late).
        self.expiry_interval_s = min(30.0, pending_ttl_s / 10)
        self._next_expiry = 0.0
        self.head_height: int | None = None
        self.applied_height: int | None = None
        # Set once the first message of a stream arrives: the chain is being followed.
        self.following = asyncio.Event()
        # time.monotonic() of the adapter's last message: a silent stream is not following.
        self.last_event_s: float | None = None
        self._failures = 0  # streams in a row that ended before or without a message
        self._down_since: float | None = None
        self._last_problem: dict[str, object] | None = None

    async def run(self) -> None:
        """Streams forever; while the adapter is away it retries with exponential
        backoff (backoff_s doubling up to MAX_BACKOFF_S) and logs the outage once
        when it starts and once when the stream is back, not every attempt."""
        while True:
            problem: dict[str, object] | None = None
            try:
                await self._stream_once()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                problem = {"code": exc.code().name, "details": exc.details()}
            except CursorMismatchError as exc:
                log.warning(
                    "resubscribing from stored cursor",
                    extra={"chain": self.applier.chain, "reason": str(exc)},
                )
            except Exception:
                log.exception("block stream failed", extra={"chain": self.applier.chain})
            outage_begins = self.following.is_set() or self._failures == 0
            if outage_begins:
                # The chain was followed (or never was, at start): an outage begins.
                self._down_since = time.monotonic()
            if problem is not None and (outage_begins or problem != self._last_problem):
                # Once per outage, and again only when the reason changes (another error).
                self._last_problem = problem
                log.warning(
                    "block stream ended",
                    extra={"chain": self.applier.chain, "adapter": self.target, **problem},
                )
            elif problem is not None:
                log.debug("block stream still down", extra={"chain": self.applier.chain, **problem})
            self.following.clear()
            self._failures += 1
            metrics.CHAIN_STREAMING.labels(self.applier.chain).set(0)
            metrics.CHAIN_STREAM_ENDS.labels(self.applier.chain).inc()
            await asyncio.sleep(retry_delay_s(self.backoff_s, self._failures))

    def since_event_s(self) -> float | None:
        """Seconds since the adapter last sent anything (None: never)."""
        if self.last_event_s is None:
            return None
        return float(time.monotonic() - self.last_event_s)

    async def _stream_once(self) -> None:
        cursor, locator = await self.applier.cursor()
        if cursor is not None:
            self.applied_height = cursor.height
        request = chain_pb.StreamBlocksRequest(
            from_cursor=cursor, locator=locator, include_pending=self.include_pending
        )
        # One request id per stream: the core's lines about it and the adapter's share it.
        REQUEST_ID.set(new_request_id())
        async with self.link.channel() as channel:
            stub = chain_grpc.ChainAdapterServiceStub(channel)
            async for response in stub.StreamBlocks(request):
                self.last_event_s = time.monotonic()
                if not self.following.is_set():
                    metrics.CHAIN_STREAMING.labels(self.applier.chain).set(1)
                    if self._failures and self._down_since is not None:
                        log.info(
                            "block stream resumed",
                            extra={
                                "chain": self.applier.chain,
                                "down_s": round(time.monotonic() - self._down_since, 3),
                                "attempts": self._failures,
                            },
                        )
                    self._failures = 0
                self.following.set()
                event = response.event
                kind = event.WhichOneof("event")
                if kind == "block":
                    # The head moves before the block is applied: its events
                    # are visible from the commit on, and a reader that sees
                    # invoice.paid must never be shown fewer confirmations
                    # than paid took (the head was set only after
                    # apply_block returned, and a GetInvoice answered while
                    # it released its connection counted from the old head).
                    # A head ahead of the applied block is what a head event
                    # already gives; lag_blocks says so.
                    self.head_height = max(self.head_height or 0, event.block.height)
                    started_s = time.perf_counter()
                    written = await self.applier.apply_block(event.block)
                    metrics.block_applied(
                        self.applier.chain,
                        event.block.time.seconds + event.block.time.nanos / 1e9,
                        time.perf_counter() - started_s,
                    )
                    self.applied_height = event.block.height
                    log.info(
                        "block applied",
                        extra={
                            "chain": self.applier.chain,
                            "height": event.block.height,
                            "transfers": len(event.block.transfers),
                            "events": written,
                        },
                    )
                elif kind == "undo":
                    await self.applier.apply_undo(event.undo)
                    to_height = event.undo.to_cursor.height
                    depth = (self.applied_height or to_height) - to_height
                    metrics.reorged(self.applier.chain, max(0, depth))
                    self.head_height = to_height
                    self.applied_height = to_height
                elif kind == "head":
                    self.head_height = event.head.head.height
                    if cursor is None and await self.applier.anchor(event.head.head):
                        # Resumable from here on: nothing mined during a reconnect is lost.
                        cursor = event.head.head
                elif kind == "pending":
                    await self.applier.apply_pending(event.pending)
                metrics.chain_followed(self.applier.chain, self.applied_height, self.head_height)
                if time.monotonic() >= self._next_expiry:
                    # Also without include_pending: sightings recorded before
                    # zero-conf was switched off must still expire.
                    self._next_expiry = time.monotonic() + self.expiry_interval_s
                    await self.applier.expire_pending(self.pending_ttl_s)
