"""The edge's one error path: every exception a handler lets out becomes a
google.rpc.Status here and nowhere else.

- a Refusal: its code, ErrorInfo (reason, domain) and BadRequest field violations;
- the database unreachable (cannot connect, shutting down, pool closed, the
  connection lost): UNAVAILABLE with RetryInfo, so that standard retry
  policies retry it;
- anything else: INTERNAL with an opaque incident id that is also in the log
  with the traceback. The caller never sees exception text, class names,
  SQL or addresses (the attacker here is any client probing for internals).

`rpc` and `rpc_stream` wrap each servicer method; core/api/guard.py wraps
every method of every service once more, so nothing escapes as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from core import reasons
from core.errors import DOMAIN, Code, Refusal, invalid, not_found

# Re-exported so handlers import their whole error vocabulary from one place.
# The edge's one mapping of the database: an outage (asyncpg's connection
# errors, recognised in core/store/outage.py) becomes UNAVAILABLE; the edge
# itself imports no asyncpg (tests/unit/test_import_graph.py).
from core.store.outage import database_unavailable
from core.telemetry.logs import METADATA_KEY, REQUEST_ID

__all__ = [
    "DOMAIN",
    "Code",
    "Refusal",
    "invalid",
    "not_found",
    "rpc",
    "rpc_stream",
    "status_of",
    "to_status",
]

log = logging.getLogger("kassa.core.api")

# How long a caller should wait before retrying while the database is away.
RETRY_DELAY_S = 1

S = TypeVar("S")
Q = TypeVar("Q")
R = TypeVar("R")


# Bounds on what a status carries, whatever a refusal below put in it: a
# refusal may quote the caller's input, and an echo must stay far below the
# 16 KiB that a client accepts in headers.
MAX_MESSAGE = 1024
MAX_DETAIL = 256
MAX_VIOLATIONS = 20


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def to_status(refusal: Refusal, extra: Sequence[any_pb2.Any] = ()) -> grpc.Status:
    details = []
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=refusal.reason,
            domain=refusal.domain,
            metadata={
                _cut(k, MAX_DETAIL): _cut(v, MAX_DETAIL) for k, v in refusal.metadata.items()
            },
        )
    )
    details.append(info)
    if refusal.violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_cut(f, MAX_DETAIL), description=_cut(d, MAX_DETAIL)
                    )
                    for f, d in refusal.violations[:MAX_VIOLATIONS]
                ]
            )
        )
        details.append(bad)
    details.extend(extra)
    # Code's names are google.rpc.Code's: a missing one fails here, in tests.
    code = getattr(code_pb2, refusal.code.name)
    status = rpc_status.to_status(
        status_pb2.Status(code=code, message=_cut(refusal.message, MAX_MESSAGE), details=details)
    )
    # The call's request id goes back with the error too (an abort replaces the trailers
    # the access-log interceptor set): the id a support ticket quotes is in the logs.
    request_id = REQUEST_ID.get()
    if request_id is None:
        return status
    trailers = (*status.trailing_metadata, (METADATA_KEY, request_id))
    return _Status(status.code, status.details, trailers)


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")),
    grpc.Status,  # type: ignore[misc]
):
    pass


def _unavailable_status() -> grpc.Status:
    retry = any_pb2.Any()
    retry.Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=RETRY_DELAY_S))
    )
    refusal = Refusal(
        Code.UNAVAILABLE,
        reasons.DATABASE_UNAVAILABLE,
        "the service is temporarily unavailable; retry later",
    )
    return to_status(refusal, [retry])


def _internal_status(exc: BaseException, method: str) -> grpc.Status:
    incident = secrets.token_hex(8)
    log.error(
        "unexpected error in %s (incident %s)",
        method,
        incident,
        exc_info=exc,
        extra={"incident": incident, "method": method},
    )
    refusal = Refusal(
        Code.INTERNAL,
        reasons.INTERNAL_ERROR,
        f"internal error (incident {incident})",
        metadata={"incident": incident},
    )
    return to_status(refusal)


def status_of(exc: Exception, method: str) -> grpc.Status:
    """The status a caller gets for `exc`: the one mapping of every service."""
    if isinstance(exc, Refusal):
        return to_status(exc)
    if database_unavailable(exc):
        log.warning(
            "database unavailable in %s",
            method,
            extra={"method": method, "error": type(exc).__name__},
        )
        return _unavailable_status()
    return _internal_status(exc, method)


async def abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    await context.abort_with_status(status_of(exc, method))
    raise AssertionError("abort_with_status returned") from exc


def rpc(
    handler: Callable[[S, Q, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[S, Q, grpc.aio.ServicerContext], Awaitable[R]]:
    """Turns a Refusal raised by a unary handler into its google.rpc.Status."""

    @functools.wraps(handler)
    async def wrapper(self: S, request: Q, context: grpc.aio.ServicerContext) -> R:
        try:
            return await handler(self, request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await abort(context, exc, handler.__qualname__)
            raise AssertionError("unreachable") from exc

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
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await abort(context, exc, handler.__qualname__)
            raise AssertionError("unreachable") from exc

    return wrapper
