"""The adapter's node client: web3's AsyncWeb3 over its WebSocketProvider,
with failover between several node URLs.

web3 owns the connection (framing, request ids, the reader task, batches)
and the subscriptions (newHeads, newPendingTransactions through its
subscription manager). Bulk data — blocks with their transactions, logs,
receipts, traces — is taken as the provider's raw JSON-RPC responses
(`provider.make_request` / `make_batch_request`), never through web3's
result formatters: those turn every hex field of every transaction into
ints and HexBytes (a 2,000-transaction block from a local anvil: 0.91 s
through w3.eth.get_block against 0.47 s raw, scripts/bench evm_fetch — the
formatting costs as much as the node), and the normaliser reads the hex
strings directly.

What web3 does not do is choose among nodes: the supervisor here connects to
one URL at a time (in order, wrapping), keeps it while its subscription loop
runs, and moves to the next when the connection drops or a request times
out, with backoff after a full round of failures. Callers of idempotent
reads simply retry on the new connection, so a failover costs latency,
never data; the block stream turns a node whose view differs into an undo.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

from web3 import AsyncWeb3, WebSocketProvider
from web3._utils.caching.caching_utils import generate_cache_key
from web3.exceptions import (
    ProviderConnectionError,
    TaskNotRunning,
    TimeExhausted,
    Web3RPCError,
)
from web3.utils.subscriptions import (
    EthSubscription,
    NewHeadsSubscription,
    NewHeadsSubscriptionContext,
    PendingTxSubscription,
    PendingTxSubscriptionContext,
)
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from adapters.evm import logs, metrics

# Full blocks with thousands of transactions are several MB of JSON.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
CALL_ATTEMPTS = 5
# A closing handshake the node does not answer must not hold up failover or shutdown.
DISCONNECT_TIMEOUT_S = 2.0

Subscription = Literal["newHeads", "newPendingTransactions"]
# Called with the notification's result in JSON-RPC form: a header object
# with hex "number" and "hash" for newHeads, a 0x hash for pending hashes.
Notification = Callable[[Any], None]
ConnectedHook = Callable[[], Coroutine[Any, Any, None]]

# A dropped or dropping connection, as web3 and websockets report it.
_CONNECTION_ERRORS = (ConnectionClosed, ProviderConnectionError, TaskNotRunning, OSError)


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


def _rpc_error(method: str, answer: Any) -> RpcError:
    err = answer.get("error") if isinstance(answer, dict) else None
    err = err if isinstance(err, dict) else {"message": str(err)}
    return RpcError(method, int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))


def _hex(value: Any) -> Any:
    """web3's formatted values (int, HexBytes) back to JSON-RPC hex strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


async def _disconnect(w3: AsyncWeb3[WebSocketProvider]) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(w3.provider.disconnect(), DISCONNECT_TIMEOUT_S)


class _RawWebSocketProvider(WebSocketProvider):
    """web3's WebSocketProvider for requests sent raw (provider.make_request),
    with two of its internals replaced, each for a reason measured here:

    - web3 raises, in its reader task, every error answer whose request it
      has no bookkeeping for ("stray" errors) — and requests sent raw have
      none, so the first `nonce too low` would kill the reader and the
      connection. Here every answer is matched by id to the request waiting
      for it; one nobody waits for is dropped with its request's timeout.
    - web3 waits for an answer by polling its response cache with
      `asyncio.sleep(0)` in a loop: a waiting request keeps a core busy for
      as long as the node takes, competing with the node and the core for
      the CPU. Fetching one block of 2,000 native transfers (its 2,000
      receipts in one batch) from a local anvil, same run, median of 5:
      1.37 s / 1.25 s for the hand-written client this replaced, 2.24 s /
      1.38 s with web3's polling, 1.23 s / 1.36 s with this event wait
      (a second, less loaded round after the slash). Here a waiter sleeps
      until the reader has cached a new message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arrived = asyncio.Event()

    def _wake_waiters(self) -> None:
        fired, self._arrived = self._arrived, asyncio.Event()
        fired.set()

    def _raise_stray_errors_from_cache(self) -> None:
        # Called by web3's reader right after it cached each message.
        self._wake_waiters()

    def _message_listener_callback(self, message_listener_task: asyncio.Task[None]) -> None:
        super()._message_listener_callback(message_listener_task)
        self._wake_waiters()  # the reader is gone: waiters must see that now

    async def _get_response_for_request_id(
        self,
        request_id: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (web3's signature)
    ) -> Any:
        timeout_s = self.request_timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + timeout_s
        cache_key = generate_cache_key(request_id)
        processor = self._request_processor
        while True:
            arrived = self._arrived  # taken before looking, so no wake-up is missed
            if cache_key in processor._request_response_cache:
                return await processor.pop_raw_response(cache_key=cache_key)
            listener = self._message_listener_task
            if listener is None or listener.done():
                # Not web3's _handle_listener_task_exceptions: on a reader
                # cancelled by a disconnect, Task.exception() raises
                # CancelledError into this caller, which no `except Exception`
                # stops — it silently killed the head poller. A stopped reader,
                # whatever the reason, is a lost connection.
                cause = None
                if listener is not None and not listener.cancelled():
                    cause = listener.exception()
                raise ProviderConnectionError("the connection's reader has stopped") from cause
            remaining_s = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(arrived.wait(), max(remaining_s, 0.0))
            except TimeoutError:
                raise TimeExhausted(
                    f"no answer to request {request_id!r} within {timeout_s} s"
                ) from None


class RpcClient:
    def __init__(self, urls: Sequence[str], request_timeout_s: float) -> None:
        if not urls:
            raise ValueError("at least one node URL is needed")
        self.urls = list(urls)
        self.request_timeout_s = request_timeout_s
        self._w3: AsyncWeb3[WebSocketProvider] | None = None
        self._connected = asyncio.Event()
        self._url_index = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        # web3 matches one batch response at a time on a persistent connection
        # (a batch answer carries no id of its own): batches take turns.
        self._batch_lock = asyncio.Lock()
        # Called after every (re)connect, e.g. to renew subscriptions.
        self._connected_hooks: list[ConnectedHook] = []
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self.current_url: str | None = None

    @property
    def connected(self) -> bool:
        """Whether a node connection is up now (False while failing over or
        backing off because no node is reachable)."""
        return self._connected.is_set()

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
        w3, self._w3 = self._w3, None
        if w3 is not None:
            await _disconnect(w3)

    def _provider(self, url: str) -> WebSocketProvider:
        return _RawWebSocketProvider(
            url,
            websocket_kwargs={
                "max_size": MAX_MESSAGE_BYTES,
                "open_timeout": CONNECT_TIMEOUT_S,
                "ping_interval": 10,
                "ping_timeout": 20,
                "compression": None,
            },
            request_timeout=self.request_timeout_s,
            # Failover, not retrying one URL, is this client's job.
            max_connection_retries=1,
        )

    async def _supervise(self) -> None:
        backoff_s = BACKOFF_INITIAL_S
        failures_in_row = 0
        while not self._closing:
            url = self.urls[self._url_index]
            w3 = AsyncWeb3(self._provider(url))
            try:
                await w3.provider.connect()
            except (
                ProviderConnectionError,
                OSError,
                TimeoutError,
                InvalidHandshake,
                InvalidURI,
            ) as exc:
                logs.warning("node_connect_failed", url=url, error=str(exc.__cause__ or exc))
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
            self._w3 = w3
            self.current_url = url
            logs.info("node_connected", url=url)
            # Runs the subscription handlers; it ends when the connection does.
            listening = asyncio.create_task(
                w3.subscription_manager.handle_subscriptions(run_forever=True),
                name="rpc-subscriptions",
            )
            metrics.CONNECTS.inc()
            metrics.NODE_UP.set(1)
            self._connected.set()
            for connected_hook in self._connected_hooks:
                hook = asyncio.create_task(connected_hook())
                self._hook_tasks.add(hook)
                hook.add_done_callback(self._hook_done)
            try:
                with contextlib.suppress(*_CONNECTION_ERRORS, Web3RPCError):
                    await listening
            finally:
                self._connected.clear()
                self._w3 = None
                listening.cancel()
                await _disconnect(w3)
                metrics.NODE_UP.set(0)
            if not self._closing:
                logs.warning("node_disconnected", url=url)
                metrics.DISCONNECTS.inc()
                # Fail over to the next URL; the dropped one is tried again later.
                self._url_index = (self._url_index + 1) % len(self.urls)

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logs.warning("on_connected_failed", error=repr(task.exception()))

    async def _connection(self) -> AsyncWeb3[WebSocketProvider]:
        try:
            await asyncio.wait_for(self._connected.wait(), self.request_timeout_s)
        except TimeoutError:
            raise NodeUnavailable("not connected to any node") from None
        w3 = self._w3
        if w3 is None:
            raise _ConnectionLost("no connection")
        return w3

    async def _drop(self, w3: AsyncWeb3[WebSocketProvider]) -> None:
        """A node that stops answering is as bad as one that hangs up: drop
        the connection so the supervisor fails over."""
        logs.warning("node_request_timeout", url=self.current_url, timeout_s=self.request_timeout_s)
        await _disconnect(w3)

    async def _raw(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """The raw response objects of the calls (one batch if several)."""
        w3 = await self._connection()
        provider = w3.provider
        try:
            if len(calls) == 1:
                method, params = calls[0]
                return [await provider.make_request(method, list(params))]  # type: ignore[arg-type]
            async with self._batch_lock:
                if self._w3 is not w3:
                    raise _ConnectionLost("reconnected while waiting for the batch turn")
                answers = await provider.make_batch_request(
                    [(method, list(params)) for method, params in calls]  # type: ignore[misc]
                )
        except TimeExhausted:
            await self._drop(w3)
            raise _ConnectionLost("request timed out") from None
        except _CONNECTION_ERRORS as exc:
            raise _ConnectionLost(str(exc)) from None
        if not isinstance(answers, list) or len(answers) != len(calls):
            # A node may answer a whole batch with one error object.
            return [answers] * len(calls)
        return list(answers)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Results of several calls in one round trip, in order; an error
        answer is returned as an RpcError in its place, not raised."""
        if not calls:
            return []
        for attempt in range(CALL_ATTEMPTS):
            try:
                answers = await self._raw(calls)
            except _ConnectionLost:
                await asyncio.sleep(min(BACKOFF_INITIAL_S * 2**attempt, BACKOFF_MAX_S))
                continue
            results: list[Any] = []
            for (method, _), answer in zip(calls, answers, strict=True):
                if not isinstance(answer, dict) or "error" in answer:
                    results.append(_rpc_error(method, answer))
                else:
                    results.append(answer.get("result"))
            return results
        raise NodeUnavailable(f"{calls[0][0]}: no answer after {CALL_ATTEMPTS} attempts")

    async def call(self, method: str, *params: Any) -> Any:
        (result,) = await self.batch([(method, params)])
        if isinstance(result, RpcError):
            raise result
        return result

    async def subscribe(self, kind: Subscription, on_result: Notification) -> str:
        """Subscribes on the current connection through web3's subscription
        manager; the id, or RpcError when the node offers no subscriptions.
        A subscription dies with its connection: renew it in a connected hook."""
        w3 = await self._connection()
        subscription: EthSubscription[Any]
        if kind == "newHeads":

            async def on_head(context: NewHeadsSubscriptionContext) -> None:
                header = context.result
                on_result({"number": _hex(header["number"]), "hash": _hex(header["hash"])})

            subscription = NewHeadsSubscription(handler=on_head)
        else:

            async def on_pending(context: PendingTxSubscriptionContext) -> None:
                on_result(_hex(context.result))

            subscription = PendingTxSubscription(full_transactions=False, handler=on_pending)
        try:
            return str(await w3.subscription_manager.subscribe(subscription))
        except Web3RPCError as exc:
            raise _rpc_error("eth_subscribe", exc.rpc_response or {}) from None
        except TimeExhausted:
            await self._drop(w3)
            raise NodeUnavailable("eth_subscribe timed out") from None
        except _CONNECTION_ERRORS as exc:
            raise NodeUnavailable(f"eth_subscribe: {exc}") from None
