"""Every reason a Sign call can end with, its gRPC code, in pipeline order.

Callers switch on ErrorInfo.reason (domain "kassa.signer"); the code is for
generic clients. The order here is the order the checks run in.
"""

from __future__ import annotations

import grpc

from signer.api.errors import Refusal

C = grpc.StatusCode
CODES: dict[str, grpc.StatusCode] = {
    "TLS_VERSION_REFUSED": C.PERMISSION_DENIED,
    "ENVELOPE_EMPTY": C.INVALID_ARGUMENT,
    "CALLER_UNKNOWN": C.UNAUTHENTICATED,
    "CALLER_TLS_MISMATCH": C.PERMISSION_DENIED,
    "SIGNATURE_INVALID": C.UNAUTHENTICATED,
    "APPROVAL_INVALID": C.UNAUTHENTICATED,
    "BODY_INVALID": C.INVALID_ARGUMENT,
    "REQUEST_LIFETIME_TOO_LONG": C.FAILED_PRECONDITION,
    "REQUEST_NOT_YET_VALID": C.FAILED_PRECONDITION,
    "REQUEST_EXPIRED": C.FAILED_PRECONDITION,
    "REQUEST_ID_REUSED": C.ALREADY_EXISTS,
    "REQUEST_IN_FLIGHT": C.ABORTED,
    "TX_DECODE_FAILED": C.INVALID_ARGUMENT,
    "INTENT_INVALID": C.INVALID_ARGUMENT,
    "INTENT_MISMATCH": C.INVALID_ARGUMENT,
    "POLICY_NO_MATCH": C.PERMISSION_DENIED,
    "POLICY_BLOCKED": C.PERMISSION_DENIED,
    "DESTINATION_NOT_ALLOWED": C.PERMISSION_DENIED,
    "OVER_TX_CAP": C.PERMISSION_DENIED,
    "OVER_VELOCITY_CAP": C.RESOURCE_EXHAUSTED,
    "APPROVALS_REQUIRED": C.PERMISSION_DENIED,
    "KEY_NOT_FOUND": C.NOT_FOUND,
    "SIGNING_FAILED": C.INTERNAL,
    "AUDIT_UNAVAILABLE": C.UNAVAILABLE,
}


def refusal(reason: str, message: str, **metadata: str) -> Refusal:
    return Refusal(CODES[reason], reason, message, metadata)
