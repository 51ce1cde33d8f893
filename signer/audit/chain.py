"""The audit log as a hash chain an auditor can check with nothing but the file.

Each record carries prev_hash, the record_hash of the record before it, and
record_hash = SHA-256(domain || canonical JSON of the record without
record_hash). Editing, deleting, reordering or inserting a record breaks the
chain at that record. There is no HMAC on purpose: verification needs no
secret, so an auditor needs only the file. What a chain cannot show alone is
the loss of its tail; for that, the head hash is printed and logged so
operations can anchor it outside the signer host and check it later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

RECORD_DOMAIN = b"kassa.signer.audit.v1\x00"
GENESIS_HASH = "0" * 64
RECORD_FIELDS = (
    "seq",
    "time",
    "caller",
    "request_id",
    "request_hash",
    "key_id",
    "intent",
    "decision",
    "reason",
    "detail",
    "policy_hash",
    "signature_hash",
    "tx_hash",
    "prev_hash",
)


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "record_hash"}
    return hashlib.sha256(RECORD_DOMAIN + canonical(body)).hexdigest()


def seal(fields: dict[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
    """The complete record: fields plus seq, prev_hash and record_hash."""
    record = {name: fields.get(name) for name in RECORD_FIELDS}
    record["seq"] = seq
    record["prev_hash"] = prev_hash
    record["record_hash"] = record_hash(record)
    return record


def seal_text(fields: dict[str, Any], seq: int, prev_hash: str) -> tuple[str, str]:
    """(canonical(seal(fields, seq, prev_hash)) as text, its record_hash) with one JSON encoding
    rather than two: record_hash is spliced into the canonical body at its sorted place. That
    place is just before the top-level "request_hash" key, found as the LAST `,"request_hash":`
    in the text: nested objects (caller, detail, intent) all sort before it, the top-level
    values from it on are strings, numbers or null (checked; else no splice), and no JSON string
    holds an unescaped quote.
    Measured: one json.dumps of a record is ~20 us of the store thread's time per Sign."""
    record = {name: fields.get(name) for name in RECORD_FIELDS}
    record["seq"] = seq
    record["prev_hash"] = prev_hash
    if not all(isinstance(record[name], str | int | None) for name in _AFTER_REQUEST_HASH):
        sealed = seal(fields, seq, prev_hash)  # not a record the pipeline writes; no splice
        return canonical(sealed).decode(), str(sealed["record_hash"])
    body = canonical(record)
    digest = hashlib.sha256(RECORD_DOMAIN + body).hexdigest()
    cut = body.rindex(_BEFORE_RECORD_HASH)
    text = b"".join((body[:cut], b',"record_hash":"', digest.encode(), b'"', body[cut:]))
    return text.decode(), digest


_BEFORE_RECORD_HASH = b',"request_hash":'
_SORTED_KEYS = sorted([*RECORD_FIELDS, "record_hash"])
assert _SORTED_KEYS[_SORTED_KEYS.index("record_hash") + 1] == "request_hash"
_AFTER_REQUEST_HASH = _SORTED_KEYS[_SORTED_KEYS.index("request_hash") :]


@dataclass(frozen=True)
class Break:
    position: int  # 1-based line or row position in the file
    seq: object
    problem: str

    def __str__(self) -> str:
        return f"record at position {self.position} (seq {self.seq}): {self.problem}"


@dataclass(frozen=True)
class Verified:
    count: int
    head_seq: int
    head_hash: str
    first_break: Break | None
    hashes: frozenset[str]


def verify(records: Iterable[tuple[str, str | None]]) -> Verified:
    """records: (record JSON text, stored record_hash or None) in file order, seq ascending.

    Stops at the first break: past it nothing is trustworthy.
    """
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    hashes: set[str] = set()
    for position, (text, stored_hash) in enumerate(records, start=1):
        problem, seq = _check(text, stored_hash, prev_hash, expected_seq)
        if problem is not None:
            return Verified(
                count, expected_seq - 1, prev_hash, Break(position, seq, problem), frozenset(hashes)
            )
        record = strict_loads(text)
        prev_hash, expected_seq, count = record["record_hash"], expected_seq + 1, count + 1
        hashes.add(prev_hash)
    return Verified(count, expected_seq - 1, prev_hash, None, frozenset(hashes))


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(text: str) -> Any:
    """JSON as the signer writes it: a duplicate key (which a lenient parser resolves to one
    of the values, so two readers may see two records) or NaN/Infinity is tampering."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def _check(
    text: str, stored_hash: str | None, prev_hash: str, expected_seq: int
) -> tuple[str | None, object]:
    try:
        record = strict_loads(text)
    except _Duplicate as exc:
        return f"duplicate JSON key {exc} (tampered)", None
    except ValueError:
        return "not JSON", None
    if not isinstance(record, dict):
        return "not a JSON object", None
    seq = record.get("seq")
    if set(record) != {*RECORD_FIELDS, "record_hash"}:
        return "fields differ from the record format", seq
    if record["record_hash"] != record_hash(record):
        return "record_hash does not match its content (edited)", seq
    if stored_hash is not None and stored_hash != record["record_hash"]:
        return "stored hash column differs from the record (edited)", seq
    if record["prev_hash"] != prev_hash:
        return (
            "prev_hash does not match the previous record "
            "(a record was deleted, inserted or reordered before it)"
        ), seq
    if seq != expected_seq:
        return f"seq {seq} where {expected_seq} was expected (deleted or reordered)", seq
    return None, seq
