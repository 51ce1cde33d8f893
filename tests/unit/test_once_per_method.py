"""core/api/interceptors.py: the edge's interceptors run on a method's first call,
their wrapped handler serves its later calls, and each call still passes through
every wrapper, outermost first; a method nobody serves is UNIMPLEMENTED every
time and never kept. Against a real grpc.aio server on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from core.api.interceptors import OncePerMethod


def _identity(data: bytes) -> bytes:
    return data


class Tagging(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every unary handler so that its answer gets `tag` prepended; counts how
    often it was asked to intercept and how often its wrapper ran."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.intercepted: list[str] = []
        self.calls = 0

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        self.intercepted.append(details.method)
        handler = await continuation(details)
        if handler is None:
            return None
        inner = handler.unary_unary

        async def wrapped(request: bytes, context: Any) -> bytes:
            self.calls += 1
            return self.tag + await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _echo(request: bytes, context: Any) -> bytes:
    return request


@pytest.mark.parametrize("calls", [1, 5])
async def test_the_chain_runs_once_per_method_and_every_wrapper_on_every_call(
    calls: int,
) -> None:
    outer, inner = Tagging(b"<"), Tagging(b"[")
    once = OncePerMethod([outer, inner])
    server = grpc.aio.server(interceptors=[once])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.S",
                {
                    name: grpc.unary_unary_rpc_method_handler(
                        _echo, request_deserializer=_identity, response_serializer=_identity
                    )
                    for name in ("A", "B")
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            a = channel.unary_unary("/t.S/A", _identity, _identity)
            b = channel.unary_unary("/t.S/B", _identity, _identity)
            missing = channel.unary_unary("/t.S/Missing", _identity, _identity)
            for i in range(calls):
                assert await a(b"a%d" % i) == b"<[a%d" % i  # outermost first
                assert await b(b"b") == b"<[b"
                with pytest.raises(grpc.aio.AioRpcError) as unknown:
                    await missing(b"x")
                assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)
    for tagging in (outer, inner):
        # Once for each served method; every time for the one nobody serves.
        assert tagging.intercepted.count("/t.S/A") == 1
        assert tagging.intercepted.count("/t.S/B") == 1
        assert tagging.intercepted.count("/t.S/Missing") == calls
        assert tagging.calls == 2 * calls
    assert sorted(once._handlers) == ["/t.S/A", "/t.S/B"]
