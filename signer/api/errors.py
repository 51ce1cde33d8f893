"""Refusals as rich gRPC statuses: a machine-readable reason the caller can switch on."""

from __future__ import annotations

import collections

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from signer.telemetry.logs import METADATA_KEY, REQUEST_ID

DOMAIN = "kassa.signer"


class Refusal(Exception):
    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}

    def to_status(self) -> grpc.Status:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        )
        return with_request_id(
            rpc_status.to_status(
                status_pb2.Status(
                    code=getattr(code_pb2, self.code.name), message=self.message, details=[detail]
                )
            )
        )


async def abort(context: grpc.aio.ServicerContext[object, object], refusal: Refusal) -> None:
    status = refusal.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")),
    grpc.Status,  # type: ignore[misc]
):
    pass


def with_request_id(status: grpc.Status) -> grpc.Status:
    """The call's request id goes back with the error too: an abort replaces the
    trailers the access-log interceptor set, and the id a caller quotes must be
    the one in this process's log lines."""
    request_id = REQUEST_ID.get()
    if request_id is None:
        return status
    trailers = (*status.trailing_metadata, (METADATA_KEY, request_id))
    return _Status(status.code, status.details, trailers)
