"""The request body's shape and validity window, checked against the signer's clock."""

from __future__ import annotations

import re

from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError

from kassa.signer.v1 import signer_pb2
from signer.api.errors import Refusal
from signer.api.reasons import refusal

_HD_KEY = re.compile(r"hd:(0|[1-9][0-9]{0,9})")
HARDENED = 2**31


def parse_body(body: bytes) -> signer_pb2.SignRequestBody | Refusal:
    try:
        parsed = signer_pb2.SignRequestBody.FromString(body)
    except DecodeError:
        return refusal("BODY_INVALID", "the body is not a SignRequestBody", problem="undecodable")
    if len(unknown_fields.UnknownFieldSet(parsed)):
        # Bytes the signer would not understand must not ride along under a signature.
        return refusal(
            "BODY_INVALID",
            "the body has fields this signer does not know",
            problem="unknown_fields",
        )
    for name in ("request_id", "key_id", "chain", "unsigned_transaction"):
        if not getattr(parsed, name):
            return refusal("BODY_INVALID", f"body.{name} is empty", problem="missing", field=name)
    for name in ("intent", "issue_time", "expire_time"):
        if not parsed.HasField(name):
            return refusal("BODY_INVALID", f"body.{name} is missing", problem="missing", field=name)
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
