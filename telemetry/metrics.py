"""RPC metrics, the access log and request ids for every gRPC method; the /metrics endpoint.

RED per method: `kassa_grpc_requests_total{service,method,code}` counts every
call by its final status code and `kassa_grpc_request_duration_seconds
{service,method}` observes its latency (a stream's until it ends). Each call
also gets one access-log line (logger kassa.access: method, code, duration_ms,
peer, request_id), and runs with its request id set (the caller's
`x-request-id` when acceptable, else a new one), which RequestIdClient sends
on with the calls it makes. The interceptor never changes what a handler answers.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, start_http_server

from telemetry.logs import (
    METADATA_KEY,
    REQUEST_ID,
    accepted_request_id,
    new_request_id,
)

access = logging.getLogger("kassa.access")

REQUESTS = Counter(
    "kassa_grpc_requests",
    "gRPC calls served, by service, method and final status code.",
    ["service", "method", "code"],
)
DURATION = Histogram(
    "kassa_grpc_request_duration_seconds",
    "Time from a gRPC call's arrival to its final status (a stream's whole life).",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def split_method(full: str) -> tuple[str, str]:
    """'/kassa.core.v1.InvoiceService/CreateInvoice' -> (service, method)."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service, method


def final_code(context: Any, raised: BaseException | None) -> grpc.StatusCode:
    """The status the client sees: what the handler set, else OK or UNKNOWN if it raised."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        # grpc.aio keeps the code set by abort()/set_code() as a StatusCode or
        # its cygrpc integer, depending on the path that set it.
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    if raised is None or isinstance(raised, grpc.aio.AbortError):
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN


Observer = Callable[[str, Any, grpc.StatusCode, float], None]


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every RPC; `observers` see each call's end (the access log)."""

    def __init__(self, observers: tuple[Observer, ...] = ()) -> None:
        self._observers = observers

    def _done(self, method: str, context: Any, raised: BaseException | None, start: float) -> None:
        elapsed_s = time.perf_counter() - start
        code = final_code(context, raised)
        service, name = split_method(method)
        REQUESTS.labels(service, name, code.name).inc()
        DURATION.labels(service, name).observe(elapsed_s)
        access.info(
            "rpc",
            extra={
                "method": method,
                "code": code.name,
                "duration_ms": round(elapsed_s * 1000, 3),
                "peer": context.peer(),
            },
        )
        for observe in self._observers:
            observe(method, context, code, elapsed_s)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        done = self._done

        def unary_response(behaviour: Any) -> Any:
            async def wrapped(request: Any, context: Any) -> Any:
                start = time.perf_counter()
                REQUEST_ID.set(request_id_of(context))
                try:
                    response = await behaviour(request, context)
                except BaseException as exc:
                    done(method, context, exc, start)
                    raise
                done(method, context, None, start)
                return response

            return wrapped

        def stream_response(behaviour: Any) -> Any:
            if not inspect.isasyncgenfunction(behaviour):
                # A handler that writes with context.write() is a coroutine.
                return unary_response(behaviour)

            async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
                start = time.perf_counter()
                REQUEST_ID.set(request_id_of(context))
                try:
                    async for item in behaviour(request, context):
                        yield item
                except BaseException as exc:
                    done(method, context, exc, start)
                    raise
                done(method, context, None, start)

            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary_response(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                stream_response(handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                unary_response(handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            stream_response(handler.stream_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )


def request_id_of(context: Any) -> str:
    """The caller's x-request-id when acceptable, else a new one."""
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_KEY:
            return accepted_request_id(value) or new_request_id()
    return new_request_id()


class RequestIdClient(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Sends the current request id (or a new one) as x-request-id on every outgoing call."""

    def _with_id(self, details: Any) -> Any:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != METADATA_KEY]
        request_id = REQUEST_ID.get() or new_request_id()
        metadata.append((METADATA_KEY, request_id))
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


def serve_metrics(listen: str) -> Callable[[], None]:
    """Serves GET /metrics on `listen` in a daemon thread; returns its stop function."""
    host, port = parse_listen(listen)
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
