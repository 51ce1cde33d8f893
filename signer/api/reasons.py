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
    "FIELD_TOO_LONG": C.INVALID_ARGUMENT,
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
    # signer.policy.decide.STEPS, in order (a test holds the two lists together)
    "CHAIN_NOT_CONFIGURED": C.PERMISSION_DENIED,
    "PURPOSE_KEY_MISMATCH": C.PERMISSION_DENIED,
    "SWEEP_NOT_TO_TREASURY": C.PERMISSION_DENIED,
    "GAS_FUNDING_NOT_NATIVE": C.PERMISSION_DENIED,
    "GAS_FUNDING_DESTINATION_MISMATCH": C.PERMISSION_DENIED,
    "OVER_GAS_FUNDING_CAP": C.PERMISSION_DENIED,
    "NONCE_FILL_NOT_EVM": C.PERMISSION_DENIED,
    "NONCE_FILL_HAS_DATA": C.PERMISSION_DENIED,
    "NONCE_FILL_VALUE_NOT_ZERO": C.PERMISSION_DENIED,
    "NONCE_FILL_NOT_TO_SELF": C.PERMISSION_DENIED,
    "POLICY_NO_MATCH": C.PERMISSION_DENIED,
    "POLICY_BLOCKED": C.PERMISSION_DENIED,
    "DESTINATION_NOT_ALLOWED": C.PERMISSION_DENIED,
    "FEE_OVER_CAP": C.PERMISSION_DENIED,
    "OVER_TX_CAP": C.PERMISSION_DENIED,
    "OVER_VELOCITY_CAP": C.RESOURCE_EXHAUSTED,
    "APPROVALS_REQUIRED": C.PERMISSION_DENIED,
    # after the decision
    "KEY_NOT_FOUND": C.NOT_FOUND,
    "SIGNING_FAILED": C.INTERNAL,
    "REQUEST_CANCELLED": C.CANCELLED,
    "AUDIT_UNAVAILABLE": C.UNAVAILABLE,
    # GetPublicKey / ListKeys
    "CALLER_NOT_ALLOWED": C.PERMISSION_DENIED,
}


# The Sign pipeline's checks as one ordered list of named steps, each with the reasons it can
# give; the first failing step decides (docs/threat-model.md, "Signer policy: evaluation
# order"). "policy" is signer.policy.decide.STEPS, whose reasons a test holds equal to these.
PIPELINE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tls", ("TLS_VERSION_REFUSED",)),
    ("envelope_bounds", ("FIELD_TOO_LONG",)),
    (
        "authenticate",
        (
            "ENVELOPE_EMPTY",
            "CALLER_UNKNOWN",
            "CALLER_TLS_MISMATCH",
            "SIGNATURE_INVALID",
            "APPROVAL_INVALID",
        ),
    ),
    ("body", ("FIELD_TOO_LONG", "BODY_INVALID")),
    ("window", ("REQUEST_LIFETIME_TOO_LONG", "REQUEST_NOT_YET_VALID", "REQUEST_EXPIRED")),
    ("request_id", ("REQUEST_ID_REUSED", "REQUEST_IN_FLIGHT")),
    ("decode", ("TX_DECODE_FAILED", "INTENT_INVALID", "INTENT_MISMATCH")),
    (
        "policy",
        (
            "CHAIN_NOT_CONFIGURED",
            "PURPOSE_KEY_MISMATCH",
            "SWEEP_NOT_TO_TREASURY",
            "GAS_FUNDING_NOT_NATIVE",
            "GAS_FUNDING_DESTINATION_MISMATCH",
            "OVER_GAS_FUNDING_CAP",
            "NONCE_FILL_NOT_EVM",
            "NONCE_FILL_HAS_DATA",
            "NONCE_FILL_VALUE_NOT_ZERO",
            "NONCE_FILL_NOT_TO_SELF",
            "POLICY_NO_MATCH",
            "POLICY_BLOCKED",
            "DESTINATION_NOT_ALLOWED",
            "FEE_OVER_CAP",
            "OVER_TX_CAP",
            "OVER_VELOCITY_CAP",
            "APPROVALS_REQUIRED",
        ),
    ),
    ("key", ("KEY_NOT_FOUND",)),
    ("sign", ("SIGNING_FAILED", "REQUEST_CANCELLED")),
    ("audit", ("AUDIT_UNAVAILABLE",)),
)


def refusal(reason: str, message: str, **metadata: str) -> Refusal:
    return Refusal(CODES[reason], reason, message, metadata)
