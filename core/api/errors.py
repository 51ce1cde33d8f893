"""Rich gRPC errors: google.rpc.Status with ErrorInfo and BadRequest details."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "kassa.core"
S = TypeVar("S")
Q = TypeVar("Q")
R = TypeVar("R")


class ApiError(Exception):
    """Raised by handlers; turned into a google.rpc.Status by the servicer."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        violations: Sequence[tuple[str, str]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.violations = list(violations)
        self.metadata = dict(metadata or {})

    def to_status(self) -> grpc.Status:
        details = []
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        )
        details.append(info)
        if self.violations:
            bad = any_pb2.Any()
            bad.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in self.violations
                    ]
                )
            )
            details.append(bad)
        code = getattr(code_pb2, self.code.name)
        return rpc_status.to_status(
            status_pb2.Status(code=code, message=self.message, details=details)
        )


def invalid(violations: Sequence[tuple[str, str]]) -> ApiError:
    fields = ", ".join(f for f, _ in violations)
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        f"invalid request: {fields}",
        violations,
    )


def not_found(what: str, name: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.NOT_FOUND,
        f"{what.upper()}_NOT_FOUND",
        f"{name} not found",
        metadata={"name": name},
    )


def rpc(
    handler: Callable[[S, Q, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[S, Q, grpc.aio.ServicerContext], Awaitable[R]]:
    """Turns an ApiError raised by a unary handler into its google.rpc.Status."""

    @functools.wraps(handler)
    async def wrapper(self: S, request: Q, context: grpc.aio.ServicerContext) -> R:
        try:
            return await handler(self, request, context)
        except ApiError as exc:
            await context.abort_with_status(exc.to_status())
            raise AssertionError("abort_with_status returned") from exc

    return wrapper
