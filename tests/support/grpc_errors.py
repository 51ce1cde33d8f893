"""Reading google.rpc.Status details out of a gRPC error, for assertions."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class RichError:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    fields: list[str]
    metadata: dict[str, str]


def rich(error: grpc.RpcError) -> RichError:
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status details on {error}"
    reason = domain = ""
    fields: list[str] = []
    metadata: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return RichError(error.code(), status.message, reason, domain, fields, metadata)
