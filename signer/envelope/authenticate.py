"""Who vouches for an envelope: the caller (bound to its TLS identity) and any approvers.

Pure: the keys come from configuration, the TLS subject from the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kassa.signer.v1 import signer_pb2
from signer.api.errors import Refusal
from signer.api.reasons import refusal
from signer.config import ApproverConfig, CallerConfig
from signer.envelope.digest import signature_valid


@dataclass(frozen=True)
class Authenticated:
    caller: CallerConfig
    approvers: frozenset[str]


def authenticate(
    envelope: signer_pb2.SignedEnvelope,
    tls_subject: str | None,
    tls_required: bool,
    callers: Mapping[str, CallerConfig],
    approvers: Mapping[str, ApproverConfig],
) -> Authenticated | Refusal:
    """tls_subject: the verified client certificate's subject, None on a plaintext channel."""
    if not envelope.body:
        return refusal("ENVELOPE_EMPTY", "the envelope carries no body")
    caller = callers.get(envelope.caller_key_id)
    if caller is None:
        return refusal(
            "CALLER_UNKNOWN",
            f"caller key {envelope.caller_key_id!r} is not allowlisted",
            caller_key_id=envelope.caller_key_id,
        )
    if tls_required and (tls_subject is None or tls_subject != caller.tls_subject):
        # A stolen caller key is useless from another machine's certificate, and vice versa.
        return refusal(
            "CALLER_TLS_MISMATCH",
            f"caller {caller.key_id!r} must connect as {caller.tls_subject!r}",
            caller_key_id=caller.key_id,
            tls_subject=tls_subject or "",
        )
    if not signature_valid(caller.ed25519_public_key, envelope.body, envelope.caller_signature):
        return refusal(
            "SIGNATURE_INVALID",
            "the caller signature does not verify over the envelope body",
            caller_key_id=caller.key_id,
        )
    seen: set[str] = set()
    for approval in envelope.approvals:
        approver = approvers.get(approval.approver_key_id)
        if approver is None:
            return refusal(
                "APPROVAL_INVALID",
                f"approver {approval.approver_key_id!r} is unknown",
                approver_key_id=approval.approver_key_id,
                problem="unknown",
            )
        if approver.key_id in seen:
            return refusal(
                "APPROVAL_INVALID",
                f"approver {approver.key_id!r} appears twice",
                approver_key_id=approver.key_id,
                problem="duplicate",
            )
        if not signature_valid(approver.ed25519_public_key, envelope.body, approval.signature):
            return refusal(
                "APPROVAL_INVALID",
                f"approval by {approver.key_id!r} does not verify over the body",
                approver_key_id=approver.key_id,
                problem="signature",
            )
        seen.add(approver.key_id)
    return Authenticated(caller, frozenset(seen))
