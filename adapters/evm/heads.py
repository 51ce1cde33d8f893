"""The node's head, shared by every stream.

newHeads over eth_subscribe gives latency; a poll of the latest header every
poll_interval_s is the fallback when the node offers no subscriptions and a
safety net when it does (a notification lost in a reconnect, or a reorg to a
chain of the same height, which some nodes do not announce). The poll asks
for the latest header rather than eth_blockNumber because the hash is what
reveals a same-height reorg.

Streams wait on `changed()`: an event that is set, and replaced, on every
change of head, so any number of streams wake on one notification.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from adapters.evm import logs, metrics
from adapters.evm.ancestry import Cursor
from adapters.evm.normalise import quantity
from adapters.evm.rpc import NodeUnavailable, RpcClient, RpcError


class HeadTracker:
    def __init__(self, rpc: RpcClient, poll_interval_s: float) -> None:
        self.rpc = rpc
        self.poll_interval_s = poll_interval_s
        self.head: Cursor | None = None
        self._changed = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self.rpc.add_connected_hook(self._subscribe)
        await self._subscribe()
        await self._poll_once()
        self._poller = asyncio.create_task(self._poll_forever(), name="head-poller")

    async def stop(self) -> None:
        # The flag as well as the cancel: Python 3.11's asyncio.wait_for (under
        # the provider's wait for an answer) returns a result that arrives with
        # the cancellation and drops the cancellation, so the poller went on and
        # stop() waited forever (the adapter SIGKILLed at shutdown under load).
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    def changed(self) -> asyncio.Event:
        """Set on the next head change; take it before reading `head`."""
        return self._changed

    async def current(self) -> Cursor:
        while self.head is None:
            await self._changed.wait()
        return self.head

    def _update(self, cursor: Cursor) -> None:
        if cursor == self.head:
            return
        self.head = cursor
        metrics.HEAD_HEIGHT.set(cursor.height)
        fired, self._changed = self._changed, asyncio.Event()
        fired.set()

    async def _subscribe(self) -> None:
        try:
            await self.rpc.subscribe("newHeads", self._notified)
            logs.info("heads_subscribed", url=self.rpc.current_url)
        except NodeUnavailable as exc:
            logs.warning("heads_subscribe_failed", error=str(exc))
        except RpcError as exc:
            logs.warning(
                "heads_subscription_unavailable",
                error=exc.message,
                fallback="polling",
                poll_interval_s=self.poll_interval_s,
            )
        # A head may have been missed while disconnected.
        with contextlib.suppress(NodeUnavailable, RpcError):
            await self._poll_once()

    def _notified(self, result: Any) -> None:
        if not isinstance(result, dict):
            return
        try:
            self._update(Cursor(quantity(result.get("number")), str(result["hash"]).lower()))
        except (KeyError, ValueError):
            logs.warning("heads_bad_notification", result=str(result)[:200])

    async def _poll_once(self) -> None:
        header = await self.rpc.call("eth_getBlockByNumber", "latest", False)
        if header:
            self._update(Cursor(quantity(header["number"]), str(header["hash"]).lower()))

    async def _poll_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self._poll_once()
            except (NodeUnavailable, RpcError) as exc:
                logs.warning("heads_poll_failed", error=str(exc))
            except Exception as exc:
                # The poll is the backstop that keeps heads moving when
                # notifications stop: a failure nobody foresaw must cost one
                # poll, never the poller (a dead task here is silent, and every
                # stream then waits on a head that no longer moves).
                logs.error("heads_poll_failed", error=repr(exc))
