"""The core's server interceptors, run once per method instead of once per call.

grpc.aio runs every interceptor's `intercept_service` on every call, and the
core's (core/telemetry/rpc.py's RpcMetrics, core/tls.py's Tls13Only and
core/api/guard.py's EdgeInterceptor) each answer it by building a new
handler around the method's own: the same wrapping, call after call, since
none of them looks at anything of the call there but its method name. Here
the chain runs on a method's first call and its handler is kept for the
method's next ones; the wrapped handlers themselves still do all their
per-call work (request id, metrics, access line, TLS check, decode,
authentication, bounds, error mapping). Measured: see docs/performance.md
("Ledger, single-posting RPC").

What it relies on: an interceptor given to it wraps a method's handler by
the method's name alone (it reads no metadata in `intercept_service`), and
the server's handlers do not change once it serves (grpc.aio's generic
handlers are looked up by name). A method no handler serves is not kept (the
caller picks the names): it is looked up again on every call, and answered
UNIMPLEMENTED by grpc as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc


class OncePerMethod(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """`interceptors` (outermost first), run on a method's first call; their handler
    kept for its later calls."""

    def __init__(self, interceptors: Sequence[grpc.aio.ServerInterceptor]) -> None:
        self._interceptors = tuple(interceptors)
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = details.method
        handler = self._handlers.get(method)
        if handler is not None:
            return handler

        async def chain(index: int, at: grpc.HandlerCallDetails) -> Any:
            if index == len(self._interceptors):
                return await continuation(at)
            return await self._interceptors[index].intercept_service(
                lambda then: chain(index + 1, then), at
            )

        handler = await chain(0, details)
        if handler is not None:
            self._handlers[method] = handler
        return handler
