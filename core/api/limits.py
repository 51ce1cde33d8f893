"""What any request field may hold, whatever the RPC: checked once at the edge
(core/api/guard.py) before a handler sees the request.

The attacker is any client, authenticated or not, sending values the
database or protobuf cannot hold or that would confuse what reads them
later: a NUL in a string (PostgreSQL text refuses it), a uint64 past
bigint, a uint32 past integer, a negative page size, a Timestamp outside
0001-9999 (Python's datetime and protobuf's own range), strings long enough
to make a row unreadable. Each such field is named in a violation; a
violation never echoes the value, only where it is and what it must be.

Handlers still validate what each field means (formats, references); this
module is only the bounds every field of its type shares.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from google.protobuf import descriptor as _d
from google.protobuf.message import Message

Violations = list[tuple[str, str]]

# Default bound of a string field, in characters. Every request string in
# the contract is an id, a name, a URL (2,048) or short free text; 4,096 is
# above all of them and keeps any single value far below the 16 KiB header
# that would carry an echo of it.
MAX_STRING = 4096
# Free text written to the ledger and read back in every ListTransfers page.
MAX_STRING_BY_FIELD = {
    "kassa.ledger.v1.Transfer.reference": 512,
    "kassa.ledger.v1.Transfer.user_data": 512,
    "kassa.ledger.v1.Account.user_data": 512,
}
MAX_BYTES = 65536
MAX_REPEATED = 10_000
MAX_VIOLATIONS = 20  # enough to name the problem, bounded like everything else
BIGINT_MAX = 2**63 - 1  # PostgreSQL bigint
INTEGER_MAX = 2**31 - 1  # PostgreSQL integer
# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
TIMESTAMP_MIN_S = -62_135_596_800
TIMESTAMP_MAX_S = 253_402_300_799
DURATION_MAX_S = 315_576_000_000

_T = _d.FieldDescriptor


def check(message: Message) -> Violations:
    """Every field of `message` (recursively) outside what its type may hold."""
    violations: Violations = []
    _walk(message, "", violations)
    return violations[:MAX_VIOLATIONS]


# Items of a repeated message field checked between two yields to the event
# loop: a CreateTransfers of 8,190 transfers takes ~100 ms to check, which
# would otherwise stall every other caller for that long (~3 ms per chunk).
CHUNK = 256


async def check_yielding(message: Message) -> Violations:
    """`check`, giving the event loop back every CHUNK items of a long repeated field."""
    violations: Violations = []
    for field, value in message.ListFields():
        plan = _plan(field)
        if (
            plan.repeated
            and plan.message
            and not plan.map_entry
            and CHUNK < len(value) <= MAX_REPEATED
        ):
            for i, item in enumerate(value):
                if i % CHUNK == 0:
                    await asyncio.sleep(0)
                _walk(item, f"{plan.name}[{i}].", violations)
                if len(violations) >= MAX_VIOLATIONS:
                    return violations[:MAX_VIOLATIONS]
            continue
        _field(field, value, "", violations)
    return violations[:MAX_VIOLATIONS]


def check_at_once(message: Message) -> Violations | None:
    """`check(message)` when `check_yielding` would not yield (no repeated message
    field past CHUNK items at the top), else None: the caller awaits check_yielding.
    Why: the edge admits the usual call without awaiting (core/api/guard.py), and
    the same walk decides both ways, so the two can never disagree."""
    for field, value in message.ListFields():
        plan = _plan(field)
        if plan.repeated and plan.message and not plan.map_entry and len(value) > CHUNK:
            return None
    return check(message)


class _Plan(NamedTuple):
    """What the walk needs of a field, read from its descriptor once per process: each
    read of a descriptor's attribute is a call into protobuf's C (~0.1 us), and the
    walk made dozens per request (a one-transfer CreateTransfers, in a loop: 9.8 -> 4.9 us)."""

    name: str
    map_entry: bool
    repeated: bool
    message: bool  # a message field, or a map (whose entries are messages)
    kind: int
    bound: int  # a string's bound in characters


_PLANS: dict[_d.FieldDescriptor, _Plan] = {}
_NAMES: dict[Any, str] = {}  # a message descriptor: its full name


def _plan(field: _d.FieldDescriptor) -> _Plan:
    plan = _PLANS.get(field)
    if plan is None:
        message_type = field.message_type
        plan = _PLANS[field] = _Plan(
            field.name,
            message_type is not None and message_type.GetOptions().map_entry,
            field.is_repeated,
            field.type == _T.TYPE_MESSAGE,
            field.type,
            MAX_STRING_BY_FIELD.get(field.full_name, MAX_STRING),
        )
    return plan


def _walk(message: Message, prefix: str, violations: Violations) -> None:
    descriptor = message.DESCRIPTOR
    name = _NAMES.get(descriptor)
    if name is None:
        name = _NAMES[descriptor] = descriptor.full_name
    if name == "google.protobuf.Timestamp":
        seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
        if not TIMESTAMP_MIN_S <= seconds <= TIMESTAMP_MAX_S or not 0 <= nanos <= 999_999_999:
            violations.append((prefix.rstrip("."), "must be between 0001-01-01 and 9999-12-31"))
        return
    if name == "google.protobuf.Duration":
        seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
        if abs(seconds) > DURATION_MAX_S or abs(nanos) > 999_999_999:
            violations.append((prefix.rstrip("."), "is out of range"))
        return
    for field, value in message.ListFields():
        _field(field, value, prefix, violations)


def _field(field: _d.FieldDescriptor, value: Any, prefix: str, violations: Violations) -> None:
    plan = _plan(field)
    where = prefix + plan.name
    if plan.map_entry:
        if len(value) > MAX_REPEATED:
            violations.append((where, f"at most {MAX_REPEATED} entries"))
            return
        entry = field.message_type
        assert entry is not None  # a map's field is one of its entry messages
        key_field = entry.fields_by_name["key"]
        value_field = entry.fields_by_name["value"]
        for key, item in value.items():
            # The key is data: name the map, never the (attacker's) key.
            _scalar(key_field, key, where, violations)
            if value_field.type == _T.TYPE_MESSAGE:
                _walk(item, f"{where}.", violations)
            else:
                _scalar(value_field, item, where, violations)
        return
    if plan.repeated:
        if len(value) > MAX_REPEATED:
            violations.append((where, f"at most {MAX_REPEATED} items"))
            return
        for i, item in enumerate(value):
            if plan.message:
                _walk(item, f"{where}[{i}].", violations)
            else:
                _scalar(field, item, f"{where}[{i}]", violations)
        return
    if plan.message:
        _walk(value, f"{where}.", violations)
    else:
        _scalar(field, value, where, violations)


def _scalar(field: _d.FieldDescriptor, value: object, where: str, violations: Violations) -> None:
    plan = _plan(field)
    kind = plan.kind
    if kind == _T.TYPE_STRING:
        assert isinstance(value, str)
        bound = plan.bound
        if len(value) > bound:
            violations.append((where, f"must be at most {bound} characters"))
        elif "\x00" in value:
            violations.append((where, "must not contain NUL characters"))
    elif kind == _T.TYPE_BYTES:
        assert isinstance(value, bytes)
        if len(value) > MAX_BYTES:
            violations.append((where, f"must be at most {MAX_BYTES} bytes"))
    elif kind in (_T.TYPE_UINT64, _T.TYPE_FIXED64, _T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64):
        assert isinstance(value, int)
        if not 0 <= value <= BIGINT_MAX:
            violations.append((where, f"must be between 0 and {BIGINT_MAX}"))
    elif kind in (_T.TYPE_UINT32, _T.TYPE_FIXED32, _T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32):
        # Request integers are counts, sizes, codes and durations: never
        # negative, and stored in integer columns.
        assert isinstance(value, int)
        if not 0 <= value <= INTEGER_MAX:
            violations.append((where, f"must be between 0 and {INTEGER_MAX}"))
    elif kind == _T.TYPE_ENUM:
        assert isinstance(value, int) and field.enum_type is not None
        if field.enum_type.values_by_number.get(value) is None:
            violations.append((where, "is not a known value"))
