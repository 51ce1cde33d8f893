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

from core.chain.apply import ChainApplier, CursorMismatchError
from core.chain.link import AdapterLink
from kassa.chain.v1 import adapter_pb2 as chain_pb
from kassa.chain.v1 import adapter_pb2_grpc as chain_grpc

log = logging.getLogger("kassa.core.chain")


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
        # Set once the first message of a stream arrives: the chain is being followed.
        self.following = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._stream_once()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "block stream ended",
                    extra={
                        "chain": self.applier.chain,
                        "adapter": self.target,
                        "code": exc.code().name,
                        "details": exc.details(),
                    },
                )
            except CursorMismatchError as exc:
                log.warning(
                    "resubscribing from stored cursor",
                    extra={"chain": self.applier.chain, "reason": str(exc)},
                )
            except Exception:
                log.exception("block stream failed", extra={"chain": self.applier.chain})
            self.following.clear()
            await asyncio.sleep(self.backoff_s)

    async def _stream_once(self) -> None:
        cursor, locator = await self.applier.cursor()
        request = chain_pb.StreamBlocksRequest(
            from_cursor=cursor, locator=locator, include_pending=self.include_pending
        )
        async with self.link.channel() as channel:
            stub = chain_grpc.ChainAdapterServiceStub(channel)
            async for response in stub.StreamBlocks(request):
                self.following.set()
                event = response.event
                kind = event.WhichOneof("event")
                if kind == "block":
                    written = await self.applier.apply_block(event.block)
                    self.head_height = max(self.head_height or 0, event.block.height)
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
                    self.head_height = event.undo.to_cursor.height
                elif kind == "head":
                    self.head_height = event.head.head.height
                    if cursor is None and await self.applier.anchor(event.head.head):
                        # Resumable from here on: nothing mined during a reconnect is lost.
                        cursor = event.head.head
                elif kind == "pending":
                    await self.applier.apply_pending(event.pending)
                if time.monotonic() >= self._next_expiry:
                    # Also without include_pending: sightings recorded before
                    # zero-conf was switched off must still expire.
                    self._next_expiry = time.monotonic() + self.expiry_interval_s
                    await self.applier.expire_pending(self.pending_ttl_s)
