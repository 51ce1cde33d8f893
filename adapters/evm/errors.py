"""google.rpc.Status errors with ErrorInfo (domain kassa.chain) and, for bad
input, a BadRequest naming the field — so clients branch on a reason, not on
message text."""

from __future__ import annotations

import collections

import grpc
from google.protobuf.any_pb2 import Any as AnyPb
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from adapters.evm.telemetry.logs import METADATA_KEY, REQUEST_ID

DOMAIN = "kassa.chain"


class ServiceError(Exception):
    """Raised anywhere below a handler; the servicer turns it into a status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: dict[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}
        self.field = field

    def to_status(self) -> grpc.Status:
        details = []
        info = AnyPb()
        info.Pack(
            error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        )
        details.append(info)
        if self.field is not None:
            bad = AnyPb()
            bad.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=self.field, description=self.message, reason=self.reason
                        )
                    ]
                )
            )
            details.append(bad)
        code_value = self.code.value[0]
        assert code_pb2.Code.Name(code_value)  # a real google.rpc code
        return with_request_id(
            rpc_status.to_status(
                status_pb2.Status(code=code_value, message=self.message, details=details)
            )
        )


def invalid_argument(field: str, reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, field=field)


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
