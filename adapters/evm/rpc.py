"""Raw JSON-RPC over WebSocket with reconnect and failover between node URLs.

No web3: its response formatters cost more than the node on big blocks. One
connection is shared by every caller; a reader task routes responses to the
waiting callers by id and subscription notifications to a handler. When the
connection drops, the supervisor moves to the next URL (in order, wrapping)
with backoff; callers of idempotent reads simply retry on the new
connection, so a failover costs latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from adapters.evm import logs, metrics

# Full blocks with thousands of transactions are several MB of JSON.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
CALL_ATTEMPTS = 5

Notification = Callable[[str, Any], None]
ConnectedHook = Callable[[], Coroutine[Any, Any, None]]


class RpcError(Exception):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class NodeUnavailable(Exception):
    """No node answered: every URL is down or the request timed out."""


class _ConnectionLost(Exception):
    pass


class RpcClient:
    def __init__(self, urls: Sequence[str], request_timeout_s: float) -> None:
        if not urls:
            raise ValueError("at least one node URL is needed")
        self.urls = list(urls)
        self.request_timeout_s = request_timeout_s
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._url_index = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        # Every handler sees every subscription notification (heads, pending
        # transactions) and ignores the subscription ids it does not own.
        self._notification_handlers: list[Notification] = []
        # Called after every (re)connect, e.g. to renew eth_subscribe.
        self._connected_hooks: list[ConnectedHook] = []
        self.current_url: str | None = None

    def add_notification_handler(self, handler: Notification) -> None:
        self._notification_handlers.append(handler)

    def add_connected_hook(self, hook: ConnectedHook) -> None:
        self._connected_hooks.append(hook)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Connects (trying every URL) and keeps the connection up in the background."""
        self._supervisor = asyncio.create_task(self._supervise(), name="rpc-supervisor")
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            raise NodeUnavailable(f"no node reachable among {self.urls}") from None

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._ws is not None:
            await self._ws.close()

    async def _supervise(self) -> None:
        backoff_s = BACKOFF_INITIAL_S
        failures_in_row = 0
        while not self._closing:
            url = self.urls[self._url_index]
            try:
                ws = await connect(
                    url,
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=CONNECT_TIMEOUT_S,
                    ping_interval=10,
                    ping_timeout=20,
                    compression=None,
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                logs.warning("node_connect_failed", url=url, error=str(exc))
                metrics.CONNECT_FAILURES.inc()
                self._url_index = (self._url_index + 1) % len(self.urls)
                failures_in_row += 1
                # Back off only after a full round of URLs has failed.
                if failures_in_row % len(self.urls) == 0:
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                continue
            failures_in_row = 0
            backoff_s = BACKOFF_INITIAL_S
            self._ws = ws
            self.current_url = url
            logs.info("node_connected", url=url)
            metrics.CONNECTS.inc()
            metrics.NODE_UP.set(1)
            reader = asyncio.create_task(self._read(ws), name="rpc-reader")
            self._connected.set()
            for connected_hook in self._connected_hooks:
                hook = asyncio.create_task(connected_hook())
                hook.add_done_callback(_log_hook_failure)
            try:
                await reader
            finally:
                self._connected.clear()
                metrics.NODE_UP.set(0)
                self._ws = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(_ConnectionLost(url))
                self._pending.clear()
            if not self._closing:
                logs.warning("node_disconnected", url=url)
                metrics.DISCONNECTS.inc()
                # Fail over to the next URL; the dropped one is tried again later.
                self._url_index = (self._url_index + 1) % len(self.urls)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                if isinstance(message, list):
                    for item in message:
                        self._dispatch(item)
                else:
                    self._dispatch(message)
        except ConnectionClosed:
            pass

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message and message["id"] is not None:
            future = self._pending.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message)
        elif message.get("method") == "eth_subscription":
            params = message.get("params", {})
            for handler in self._notification_handlers:
                handler(str(params.get("subscription")), params.get("result"))

    async def _send(self, payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sends requests (as a batch if several) and waits for all answers."""
        try:
            await asyncio.wait_for(self._connected.wait(), self.request_timeout_s)
        except TimeoutError:
            raise NodeUnavailable("not connected to any node") from None
        ws = self._ws
        if ws is None:
            raise _ConnectionLost("no connection")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for request in payload:
            future: asyncio.Future[Any] = loop.create_future()
            self._pending[request["id"]] = future
            futures.append(future)
        body = payload[0] if len(payload) == 1 else payload
        try:
            await ws.send(json.dumps(body))
            return await asyncio.wait_for(asyncio.gather(*futures), self.request_timeout_s)
        except ConnectionClosed as exc:
            raise _ConnectionLost(str(exc)) from None
        except TimeoutError:
            # A node that stops answering is as bad as one that hangs up:
            # drop the connection so the supervisor fails over.
            logs.warning(
                "node_request_timeout", url=self.current_url, timeout_s=self.request_timeout_s
            )
            await ws.close()
            raise _ConnectionLost("request timed out") from None
        finally:
            for request in payload:
                self._pending.pop(request["id"], None)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Results of several calls in one round trip, in order; an error
        answer is returned as an RpcError in its place, not raised."""
        if not calls:
            return []
        for attempt in range(CALL_ATTEMPTS):
            payload = [
                {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
                for method, params in calls
            ]
            try:
                answers = await self._send(payload)
            except _ConnectionLost:
                await asyncio.sleep(min(BACKOFF_INITIAL_S * 2**attempt, BACKOFF_MAX_S))
                continue
            results: list[Any] = []
            for (method, _), answer in zip(calls, answers, strict=True):
                if "error" in answer:
                    err = answer["error"] or {}
                    results.append(
                        RpcError(
                            method,
                            int(err.get("code", 0)),
                            str(err.get("message", "")),
                            err.get("data"),
                        )
                    )
                else:
                    results.append(answer.get("result"))
            return results
        raise NodeUnavailable(f"{calls[0][0]}: no answer after {CALL_ATTEMPTS} attempts")

    async def call(self, method: str, *params: Any) -> Any:
        (result,) = await self.batch([(method, params)])
        if isinstance(result, RpcError):
            raise result
        return result


def _log_hook_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logs.warning("on_connected_failed", error=repr(task.exception()))
