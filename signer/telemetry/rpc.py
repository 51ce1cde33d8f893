"""RED metrics, the access log and request ids for every RPC the signer serves; /metrics.

prometheus-client holds the metrics; this interceptor only feeds them:
`kassa_grpc_requests_total{service,method,code}` counts each call by its
final status code, `kassa_grpc_request_duration_seconds{service,method}`
observes its latency (a stream's whole life). Each call also writes one
access-log line (logger kassa.access: method, caller, code, reason,
duration_ms, and the request id of the call) and runs with its request id
set: the caller's x-request-id when acceptable, else a new one, returned in
the trailing metadata.
The interceptor never changes what a handler answers.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import Metric

from signer.telemetry.logs import METADATA_KEY, REQUEST_ID, accepted_request_id, new_request_id

access = logging.getLogger("kassa.access")
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
_DETAILS_KEY = "grpc-status-details-bin"


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


def request_id_of(context: Any) -> str:
    """The caller's x-request-id when acceptable, else a new one."""
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_KEY:
            return accepted_request_id(value) or new_request_id()
    return new_request_id()


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts, times and access-logs every RPC. The caller is who `principal` names once
    the call is done (the core: the API key), else the TLS peer. Outermost, so it sees
    the status every other interceptor settled on."""

    def __init__(self, principal: Callable[[], str | None] = lambda: None) -> None:
        self._principal = principal

    def _begin(self, context: Any) -> tuple[float, str]:
        request_id = request_id_of(context)
        REQUEST_ID.set(request_id)
        context.set_trailing_metadata(((METADATA_KEY, request_id),))
        # Asked of the live call: a call cut off by shutdown may be gone at its end.
        return time.perf_counter(), peer_caller(context)

    def _done(
        self, method: str, context: Any, raised: BaseException | None, begun: tuple[float, str]
    ) -> None:
        start, peer = begun
        elapsed_s = time.perf_counter() - start
        code = final_code(context, raised)
        service, name = split_method(method)
        REQUESTS.labels(service, name, code.name).inc()
        DURATION.labels(service, name).observe(elapsed_s)
        caller, reason = self._principal() or peer, reason_of(context)
        values = (method, caller, code.name, reason, round(elapsed_s * 1000, 3))
        access.info("rpc", extra=dict(zip(ACCESS_FIELDS, values, strict=True)))

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method

        def unary(behaviour: Any) -> Any:
            async def wrapped(request: Any, context: Any) -> Any:
                begun = self._begin(context)
                try:
                    response = await behaviour(request, context)
                except BaseException as exc:
                    self._done(method, context, exc, begun)
                    raise
                self._done(method, context, None, begun)
                return response

            return wrapped

        def streaming(behaviour: Any) -> Any:
            async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
                begun = self._begin(context)
                try:
                    async for item in behaviour(request, context):
                        yield item
                except BaseException as exc:
                    self._done(method, context, exc, begun)
                    raise
                self._done(method, context, None, begun)

            return wrapped

        return _rewrap(handler, unary, streaming)


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
