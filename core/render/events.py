"""Outbox rows to kassa.core.v1.Event messages and their webhook JSON.

Generic over the resource: an event row carries its resource type and the
serialized message; this table says which message and which Event field.
A new resource (payouts, refunds) adds one line here and one oneof field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from core.render import canonical_json
from core.render.timestamps import json_string, timestamp
from kassa.core.v1 import event_pb2, invoice_pb2, payout_pb2, reconciliation_pb2

# resource_type -> (message class, Event.resource oneof field)
RESOURCES: dict[str, tuple[type[Message], str]] = {
    "invoice": (invoice_pb2.Invoice, "invoice"),
    "payout": (payout_pb2.Payout, "payout"),
    "reconciliation": (reconciliation_pb2.Reconciliation, "reconciliation"),
}


def event(row: Mapping[str, Any]) -> event_pb2.Event:
    """An outbox row (sequence, id, type, resource_type, payload, create_time)."""
    message_type, field = RESOURCES[row["resource_type"]]
    message = event_pb2.Event(
        id=str(row["id"]),
        sequence=row["sequence"],
        type=row["type"],
        create_time=timestamp(row["create_time"]),
    )
    getattr(message, field).CopyFrom(message_type.FromString(bytes(row["payload"])))
    return message


# The Event's JSON name of each resource's oneof field.
_JSON_NAMES = {
    resource_type: event_pb2.Event.DESCRIPTOR.fields_by_name[field].json_name
    for resource_type, (_, field) in RESOURCES.items()
}


def row_json(row: Mapping[str, Any]) -> bytes:
    """to_json(event(row)), the same bytes (tests/unit/test_canonical_json.py),
    without building the Event: no Event, Timestamp or copy of the resource,
    only the resource parsed: the webhook body of each event, rendered in the
    delivery process. The events bench's invoice event, 10,000 renders, seven
    alternations, thread CPU: 26 -> 19 us (the Event and its Timestamp were ~7).
    Then msgspec's encoder for the planned dict (canonical_json.dumps_planned),
    plans keyed by field descriptor and json_string's UTC path, 10,000 renders,
    best of seven, four alternations: 15.3-15.8 -> 9.3-9.7 us."""
    message_type, _ = RESOURCES[row["resource_type"]]
    resource = message_type.FromString(bytes(row["payload"]))
    # Event's fields as ListFields gives them: a proto3 scalar only when not its
    # default; the timestamp and the resource are always set.
    head: dict[str, Any] = {}
    event_id, sequence, event_type = str(row["id"]), row["sequence"], row["type"]
    if event_id:
        head["id"] = event_id
    if sequence:
        head["sequence"] = str(sequence)
    if event_type:
        head["type"] = event_type
    head["createTime"] = json_string(row["create_time"])
    head[_JSON_NAMES[row["resource_type"]]] = canonical_json.message_json(resource)
    # The head's values are str; the resource's dict is all str, int, bool,
    # lists and dicts when its type renders through plans (every resource's
    # does: tests/unit/test_canonical_json.py).
    if canonical_json.planned(resource.DESCRIPTOR):
        return canonical_json.dumps_planned(head)
    return canonical_json.dumps(head)


def to_json(message: event_pb2.Event) -> bytes:
    """Canonical proto3 JSON: lowerCamel names, 64-bit integers and amounts
    as strings, keys sorted and no whitespace, so the bytes are the same on
    every retry and signatures are over exactly what is sent."""
    return canonical_json.event_json(message)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The Event field number of each resource (its oneof), from the descriptor.
_FIELD_NUMBERS = {
    resource_type: event_pb2.Event.DESCRIPTOR.fields_by_name[field].number
    for resource_type, (_, field) in RESOURCES.items()
}
_RESPONSE_EVENT = event_pb2.StreamEventsResponse.DESCRIPTOR.fields_by_name["event"].number


def stream_response_bytes(row: Mapping[str, Any]) -> bytes:
    """`StreamEventsResponse(event=event(row))` serialized, without parsing the
    stored resource: its bytes are already the message (protobuf's wire
    format concatenates, a length-delimited field is tag, length, bytes).
    Parsing and re-serialising each snapshot was most of a catching-up
    stream's CPU."""
    head = event_pb2.Event(
        id=str(row["id"]),
        sequence=row["sequence"],
        type=row["type"],
        create_time=timestamp(row["create_time"]),
    ).SerializeToString()
    payload = bytes(row["payload"])
    resource = _varint(_FIELD_NUMBERS[row["resource_type"]] << 3 | 2) + _varint(len(payload))
    event = head + resource + payload
    return _varint(_RESPONSE_EVENT << 3 | 2) + _varint(len(event)) + event
