"""The edge's one error path: a Refusal becomes a google.rpc.Status here and
nowhere else (ErrorInfo with reason and domain, BadRequest field violations).

Handlers and the logic below raise core.errors.Refusal; `rpc` and
`rpc_stream` wrap each servicer method and abort the call with the status.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

# Re-exported so handlers import their whole error vocabulary from one place.
from core.errors import DOMAIN, ApiError, Code, Refusal, invalid, not_found

__all__ = [
    "DOMAIN",
    "ApiError",
    "Code",
    "Refusal",
    "invalid",
    "not_found",
    "rpc",
    "rpc_stream",
    "to_status",
]

S = TypeVar("S")
Q = TypeVar("Q")
R = TypeVar("R")


def to_status(refusal: Refusal) -> grpc.Status:
    details = []
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=refusal.reason, domain=refusal.domain, metadata=refusal.metadata
        )
    )
    details.append(info)
    if refusal.violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in refusal.violations
                ]
            )
        )
        details.append(bad)
    # Code's names are google.rpc.Code's: a missing one fails here, in tests.
    code = getattr(code_pb2, refusal.code.name)
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=refusal.message, details=details)
    )


def rpc(
    handler: Callable[[S, Q, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[S, Q, grpc.aio.ServicerContext], Awaitable[R]]:
    """Turns a Refusal raised by a unary handler into its google.rpc.Status."""

    @functools.wraps(handler)
    async def wrapper(self: S, request: Q, context: grpc.aio.ServicerContext) -> R:
        try:
            return await handler(self, request, context)
        except Refusal as exc:
            await context.abort_with_status(to_status(exc))
            raise AssertionError("abort_with_status returned") from exc

    return wrapper


def rpc_stream(
    handler: Callable[[S, Q, grpc.aio.ServicerContext], AsyncIterator[R]],
) -> Callable[[S, Q, grpc.aio.ServicerContext], AsyncIterator[R]]:
    """`rpc` for server-streaming handlers: a Refusal before or between messages."""

    @functools.wraps(handler)
    async def wrapper(self: S, request: Q, context: grpc.aio.ServicerContext) -> AsyncIterator[R]:
        try:
            async for message in handler(self, request, context):
                yield message
        except Refusal as exc:
            await context.abort_with_status(to_status(exc))
            raise AssertionError("abort_with_status returned") from exc

    return wrapper
