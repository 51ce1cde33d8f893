"""The request body's shape and validity window, checked against the signer's clock."""

from __future__ import annotations

import re

from google.protobuf.message import DecodeError

from kassa.signer.v1 import signer_pb2
from signer.api.errors import Refusal
from signer.api.reasons import refusal

_HD_KEY = re.compile(r"hd:(0|[1-9][0-9]{0,9})")
HARDENED = 2**31
# The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
TIMESTAMP_MIN_S = -62_135_596_800
TIMESTAMP_MAX_S = 253_402_300_799
# Bounds on what reaches the audit log and the logs: each field's longest honest value,
# with room; anything longer is refused before it is written anywhere.
MAX_BODY_BYTES = 16 * 1024
MAX_UNSIGNED_TX_BYTES = 4096
FIELD_MAX_CHARS = {
    "request_id": 128,
    "key_id": 64,
    "chain": 32,
    "intent.destination": 64,
    "intent.asset": 128,
    "intent.amount": 80,
    "intent.reference": 256,
}


def parse_body(body: bytes) -> signer_pb2.SignRequestBody | Refusal:
    if len(body) > MAX_BODY_BYTES:
        return refusal(
            "FIELD_TOO_LONG", f"the body exceeds {MAX_BODY_BYTES} bytes", field="envelope.body"
        )
    try:
        parsed = signer_pb2.SignRequestBody.FromString(body)
    except DecodeError:
        return refusal("BODY_INVALID", "the body is not a SignRequestBody", problem="undecodable")
    # What an approver sees is what is signed: the bytes must be the one canonical encoding
    # of a message this signer understands. Re-serialised with unknown fields kept, any other
    # encoding (field order, non-minimal varints, repeated scalars, explicit defaults)
    # differs; with unknown fields dropped — at any depth — a body carrying some differs.
    if parsed.SerializeToString(deterministic=True) != body:
        return refusal(
            "BODY_INVALID", "the body is not canonically encoded", problem="non_canonical"
        )
    known = signer_pb2.SignRequestBody()
    known.CopyFrom(parsed)
    known.DiscardUnknownFields()
    if known.SerializeToString(deterministic=True) != body:
        # Bytes the signer would not understand must not ride along under a signature.
        return refusal(
            "BODY_INVALID",
            "the body has fields this signer does not know",
            problem="unknown_fields",
        )
    for name, most in FIELD_MAX_CHARS.items():
        holder = parsed.intent if name.startswith("intent.") else parsed
        if len(getattr(holder, name.removeprefix("intent."))) > most:
            return refusal("FIELD_TOO_LONG", f"{name} exceeds {most} characters", field=name)
    if len(parsed.unsigned_transaction) > MAX_UNSIGNED_TX_BYTES:
        return refusal(
            "FIELD_TOO_LONG",
            f"unsigned_transaction exceeds {MAX_UNSIGNED_TX_BYTES} bytes",
            field="unsigned_transaction",
        )
    for name in ("request_id", "key_id", "chain", "unsigned_transaction"):
        if not getattr(parsed, name):
            return refusal("BODY_INVALID", f"body.{name} is empty", problem="missing", field=name)
    for name in ("intent", "issue_time", "expire_time"):
        if not parsed.HasField(name):
            return refusal("BODY_INVALID", f"body.{name} is missing", problem="missing", field=name)
    for name in ("issue_time", "expire_time"):
        stamp = getattr(parsed, name)
        if not (TIMESTAMP_MIN_S <= stamp.seconds <= TIMESTAMP_MAX_S and 0 <= stamp.nanos < 10**9):
            return refusal(
                "BODY_INVALID",
                f"body.{name} is not a valid Timestamp",
                problem="bad_timestamp",
                field=name,
            )
    return parsed


def hd_index(key_id: str) -> int | None:
    """The deposit index of "hd:<index>" (non-hardened, canonical decimal), else None."""
    found = _HD_KEY.fullmatch(key_id)
    if found is None or int(found.group(1)) >= HARDENED:
        return None
    return int(found.group(1))


def check_window(
    issue_s: float, expire_s: float, now_s: float, max_lifetime_s: int, max_skew_s: int
) -> Refusal | None:
    """issue ≤ expire, expire - issue ≤ max lifetime, and now within the window ± skew."""
    detail = {
        "issue_time": f"{issue_s:.3f}",
        "expire_time": f"{expire_s:.3f}",
        "now": f"{now_s:.3f}",
    }
    if expire_s <= issue_s or expire_s - issue_s > max_lifetime_s:
        return refusal(
            "REQUEST_LIFETIME_TOO_LONG",
            f"expire_time must be after issue_time by at most {max_lifetime_s} s",
            max_lifetime_s=str(max_lifetime_s),
            **detail,
        )
    if issue_s > now_s + max_skew_s:
        return refusal(
            "REQUEST_NOT_YET_VALID",
            "issue_time is in the future beyond clock skew",
            max_skew_s=str(max_skew_s),
            **detail,
        )
    if now_s > expire_s + max_skew_s:
        return refusal(
            "REQUEST_EXPIRED", "expire_time has passed", max_skew_s=str(max_skew_s), **detail
        )
    return None
