"""RED metrics, the access log and request ids for every RPC the core serves; /metrics.

prometheus-client holds the metrics; this interceptor only feeds them:
`kassa_grpc_requests_total{service,method,code}` counts each call by its
final status code, `kassa_grpc_request_duration_seconds{service,method}`
observes its latency (a stream's whole life). Each call also writes one
access-log line (logger kassa.access: method, caller, code, reason,
duration_ms, and the request id of the call) and runs with its request id
set: the caller's x-request-id when acceptable, else a new one, returned in
the trailing metadata and sent on with the calls it makes (RequestIdClient).
The interceptor never changes what a handler answers.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import Metric

from core.telemetry.logs import (
    METADATA_KEY,
    REQUEST_ID,
    DirectLine,
    accepted_request_id,
    json_value,
    new_request_id,
)

access = logging.getLogger("kassa.access")
# The line without a LogRecord while the process logs as setup() left it: the same
# bytes, ~50 us less of the serving thread's CPU per call (see DirectLine).
_ACCESS_LINE = DirectLine(access)
REQUESTS = Counter(
    "kassa_grpc_requests",
    "gRPC calls served, by service, method and final status code.",
    ["service", "method", "code"],
    registry=None,  # served by serve_metrics beside the default registry: see _Served
)
DURATION = Histogram(
    "kassa_grpc_request_duration_seconds",
    "Time from a gRPC call's arrival to its final status (a stream's whole life).",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=None,
)
ACCESS_FIELDS = ("method", "caller", "code", "reason", "duration_ms")
_ACCESS_KEYS = frozenset(ACCESS_FIELDS)
_DETAILS_KEY = "grpc-status-details-bin"
_OK = grpc.StatusCode.OK


def split_method(full: str) -> tuple[str, str]:
    """'/kassa.core.v1.InvoiceService/CreateInvoice' -> (service, method)."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service, method


def final_code(context: Any, raised: BaseException | None) -> grpc.StatusCode:
    """The status the client sees: what the handler set, else OK, or UNKNOWN if it raised."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio keeps abort()'s code as cygrpc's integer
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    if raised is None or isinstance(raised, grpc.aio.AbortError):
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN


def reason_of(context: Any) -> str:
    """ErrorInfo.reason of the google.rpc.Status the call ended with, else ""."""
    for key, value in context.trailing_metadata() or ():
        if key == _DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return str(info.reason)
    return ""


def peer_caller(context: Any) -> str:
    """The client certificate's common name, else the peer address."""
    names = context.auth_context().get("x509_common_name") or ()
    return names[0].decode("utf-8", "replace") if names else str(context.peer())


Metadata = Sequence[tuple[str, str | bytes]]
# The metadata of the call this task serves, as its RpcMetrics wrapper read it, for the
# edge's authentication in the same call (core/api/auth.py): grpc builds the tuple
# anew, a namedtuple per header, on every invocation_metadata(): those namedtuples were
# 1.7 % of the serving thread over grpc's own read and two of ours (~3 us a read).
_METADATA: ContextVar[tuple[object, Metadata] | None] = ContextVar(
    "kassa_call_metadata", default=None
)


def invocation_metadata(context: Any) -> Metadata:
    """`context.invocation_metadata()`, read once per call: what the call's wrapper read
    when it is that call's (the same context object), else asked of the context."""
    known = _METADATA.get()
    if known is not None and known[0] is context:
        return known[1]
    return context.invocation_metadata() or ()


def request_id_of(metadata: Metadata) -> str:
    """The caller's x-request-id when acceptable, else a new one."""
    for key, value in metadata:
        if key == METADATA_KEY:
            return accepted_request_id(value) or new_request_id()
    return new_request_id()


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts, times and access-logs every RPC. The caller is who `principal` names once
    the call is done (the core: the API key), else the TLS peer. Outermost, so it sees
    the status every other interceptor settled on."""

    def __init__(self, principal: Callable[[], str | None] = lambda: None) -> None:
        self._principal = principal

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        return self.wrap(handler, details.method)

    def wrap(self, handler: Any, method: str) -> Any:
        """`handler` counted, timed and access-logged as `method`."""
        done = _Done(method, self._principal)

        def unary(behaviour: Any) -> Any:
            async def wrapped(request: Any, context: Any) -> Any:
                start = _begin(context)
                try:
                    response = await behaviour(request, context)
                except BaseException as exc:
                    done(context, exc, start, None)
                    raise
                done(context, None, start, None)
                return response

            return wrapped

        def streaming(behaviour: Any) -> Any:
            async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
                start = _begin(context)
                # Asked of the live call: a stream cut off by shutdown is closed by
                # the loop after grpc let go of its call.
                peer = peer_caller(context)
                try:
                    async for item in behaviour(request, context):
                        yield item
                except BaseException as exc:
                    done(context, exc, start, peer)
                    raise
                done(context, None, start, peer)

            return wrapped

        return _rewrap(handler, unary, streaming)


def _begin(context: Any) -> float:
    metadata = context.invocation_metadata() or ()
    _METADATA.set((context, metadata))
    request_id = request_id_of(metadata)
    REQUEST_ID.set(request_id)
    context.set_trailing_metadata(((METADATA_KEY, request_id),))
    return time.perf_counter()


class _Done:
    """The end of one method's calls: its metrics' children, looked up once (not per
    call), and the access line."""

    def __init__(self, method: str, principal: Callable[[], str | None]) -> None:
        self.method = method
        self.principal = principal
        self.service, self.name = split_method(method)
        self.duration = DURATION.labels(self.service, self.name)
        self.requests: dict[grpc.StatusCode, Any] = {}
        # OK's counter child, made on the first OK call (a child shows in /metrics once
        # made): most calls end OK, and a StatusCode's hash and name are Python code.
        self.ok_requests: Any = None
        # The access line's fields as DirectLine.write_lines takes them: the method's
        # part made once, then the caller's.
        self.method_json = f', "method": {json_value(method)}, "caller": '

    def __call__(
        self, context: Any, raised: BaseException | None, start: float, peer: str | None
    ) -> None:
        elapsed_s = time.perf_counter() - start
        code = final_code(context, raised)
        if code is _OK:
            requests = self.ok_requests
            if requests is None:
                requests = self.ok_requests = REQUESTS.labels(self.service, self.name, "OK")
            # Only an error carries an ErrorInfo: errors.abort, with a core.errors.Code
            # (none of them OK), is what sets grpc-status-details-bin.
            reason = ""
        else:
            requests = self.requests.get(code)
            if requests is None:  # at most one per status code
                requests = self.requests[code] = REQUESTS.labels(self.service, self.name, code.name)
            reason = reason_of(context)
        requests.inc()
        self.duration.observe(elapsed_s)
        # A unary call ends inside its task, while grpc still holds the call: its
        # peer is asked only when no API key names the caller.
        caller = self.principal() or peer or peer_caller(context)
        duration_ms = round(elapsed_s * 1000, 3)
        encoded = (  # ACCESS_FIELDS, in their order
            f"{self.method_json}{json_value(caller)}, "
            f'"code": "{code.name}", "reason": {json_value(reason)}, '
            f'"duration_ms": {json_value(duration_ms)}'
        )
        request_id = REQUEST_ID.get()
        if _ACCESS_LINE.write_lines("rpc", request_id, _ACCESS_KEYS, (encoded,)):
            return
        fields = {
            "method": self.method,
            "caller": caller,
            "code": code.name,
            "reason": reason,
            "duration_ms": duration_ms,
        }
        if not _ACCESS_LINE.write("rpc", request_id, fields):
            access.info("rpc", extra=fields)


def _rewrap(handler: Any, unary: Any, streaming: Any) -> Any:
    """The same handler with its behaviour wrapped (a stream written with
    context.write() is a coroutine, wrapped as unary)."""
    if handler.unary_unary:
        behaviour, make = unary(handler.unary_unary), grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        wrap = streaming if inspect.isasyncgenfunction(handler.unary_stream) else unary
        behaviour, make = wrap(handler.unary_stream), grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        behaviour, make = unary(handler.stream_unary), grpc.stream_unary_rpc_method_handler
    else:
        wrap = streaming if inspect.isasyncgenfunction(handler.stream_stream) else unary
        behaviour, make = wrap(handler.stream_stream), grpc.stream_stream_rpc_method_handler
    return make(behaviour, handler.request_deserializer, handler.response_serializer)


class RequestIdClient(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Sends the current request id (or a new one) as x-request-id on every outgoing call."""

    def _with_id(self, details: Any) -> Any:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != METADATA_KEY]
        metadata.append((METADATA_KEY, REQUEST_ID.get() or new_request_id()))
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._with_id(details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._with_id(details), request)


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9464' -> ('127.0.0.1', 9464); ValueError names what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"metrics listen address must be host:port, got {listen!r}")
    return host.strip("[]"), int(port)


class _Served(CollectorRegistry):
    """The process's own metrics (the default registry) and the RPC metrics. These stay
    out of the default registry because each process has its own copy of them under the
    same names, and tests import all three copies into one interpreter."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from REQUESTS.collect()
        yield from DURATION.collect()


def serve_metrics(listen: str) -> Callable[[], None]:
    """prometheus-client's GET /metrics on `listen` (a daemon thread); returns its stop."""
    host, port = parse_listen(listen)
    server, thread = start_http_server(port, addr=host, registry=_Served(auto_describe=True))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
