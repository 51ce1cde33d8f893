"""The edge in front of every kassa.* RPC, in this order:

1. decode: bytes that are not the request message are INVALID_ARGUMENT
   (reason MESSAGE_UNDECODABLE), not the UNKNOWN grpc.aio gives when a
   deserialiser raises;
   (the refusal itself waits for step 2);
2. authenticate: who is calling, before anything about the request is
   judged (an unauthenticated caller learns nothing about what a valid
   request looks like);
3. bounds: every field within what its type may hold (core/api/limits.py);
4. the handler, and whatever it raises (or 1-3 refuse) mapped to a status
   once, by core/api/errors.py (`abort`).

Health and reflection are not kassa.* and pass untouched.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from core import reasons
from core.api import limits
from core.api.auth import Authenticator
from core.api.errors import abort
from core.errors import Code, Refusal, invalid

_PREFIX = "/kassa."


class _Undecodable:
    """What the wrapped deserialiser hands on instead of raising."""


UNDECODABLE = _Undecodable()


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    assert deserialize is not None

    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:  # DecodeError, RecursionError, UnicodeDecodeError …
            return UNDECODABLE

    return decode


_UNDECODABLE_REFUSAL = Refusal(
    Code.INVALID_ARGUMENT,
    reasons.MESSAGE_UNDECODABLE,
    "the request is not a valid protobuf message of this method's request type",
)


class EdgeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(_PREFIX):
            return handler
        assert not handler.request_streaming, f"{method}: client streaming is not guarded"
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method),
                request_deserializer=_safe(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(handler.unary_unary, method),
            request_deserializer=_safe(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    async def _admit(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        """Raises the Refusal for a request no handler may see."""
        await self.auth.principal(context)  # remembered for the handler's own call
        if request is UNDECODABLE:
            raise _UNDECODABLE_REFUSAL
        assert isinstance(request, Message)
        violations = await limits.check_yielding(request)
        if violations:
            raise invalid(violations)

    def _admitted(self, request: Any, context: grpc.aio.ServicerContext) -> bool:
        """`_admit` for the usual call, without awaiting: a caller already verified
        (Authenticator.principal_at_once) with a request the bounds' walk passes at
        once (limits.check_at_once). False when `_admit` must decide (and refuse, or
        authenticate or walk the slow way). Three coroutines fewer a call."""
        return (
            self.auth.principal_at_once(context) is not None
            and request is not UNDECODABLE
            and limits.check_at_once(request) == []
        )

    def _unary(self, inner: Any, method: str) -> Any:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if not self._admitted(request, context):
                    await self._admit(request, context)
                return await inner(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await abort(context, exc, method)

        return behaviour

    def _stream(self, inner: Any, method: str) -> Any:
        if inspect.isasyncgenfunction(inner):

            async def generator(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                try:
                    await self._admit(request, context)
                    async for message in inner(request, context):
                        yield message
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    await abort(context, exc, method)

            return generator

        # A handler that writes with context.write and returns None.
        async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
            try:
                await self._admit(request, context)
                await inner(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await abort(context, exc, method)

        return writer
