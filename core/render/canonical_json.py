"""Canonical proto3 JSON of an event (what core/render/events.to_json
returns: the webhook bodies and the JetStream relay's messages), built
faster than json_format with the same bytes.

Measured: json_format.MessageToDict walks each message's descriptor and
dispatches on every field's type at run time, ~40 us of an invoice event's
rendering (the events bench's body, 563 B), a tenth of a delivery's CPU in
the delivery process. Here each message type's fields are looked at once (a
plan of name and converter per field number), and a message renders by
walking only the fields it has set, as json_format does (`ListFields`, so a
field's presence rules are the library's own). A message type holding
anything whose JSON form this does not mirror field by field (floats,
well-known types other than Timestamp, closed enums, extensions) renders
through json_format itself, whole. tests/unit/test_canonical_json.py checks
the bytes equal json_format's for generated messages of every resource.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from kassa.core.v1 import event_pb2

_TIMESTAMP = "google.protobuf.Timestamp"
_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_AS_IS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_STRING,
    }
)

Convert = Callable[[Any], Any]
# Per message type: field (its FieldDescriptor, the object ListFields gives) ->
# (JSON name, converter of one value or None for the value as it is, how the
# field holds values: "one", "list" or "map"); None: json_format. Keyed by the
# descriptor, not its number (a property read per field), and no call for a
# value kept as it is: message_json of the events bench's invoice, thread CPU,
# 10,000 a run, best of seven, two alternations: 6.7, 6.3 -> 5.8, 5.7 us.
_Plan = dict[FieldDescriptor, tuple[str, Convert | None, str]] | None
_PLANS: dict[str, _Plan] = {}


def _same(value: Any) -> Any:
    return value


def _bytes(value: Any) -> Any:
    return base64.b64encode(value).decode("utf-8")  # json_format's form of bytes


def _timestamp(value: Any) -> Any:
    return value.ToJsonString()  # json_format's own form of a Timestamp


def _enum_converter(field: FieldDescriptor) -> Convert | None:
    enum_type = field.enum_type
    assert enum_type is not None, "an enum field has its enum type"
    if enum_type.is_closed or enum_type.full_name == "google.protobuf.NullValue":
        return None
    names = {number: value.name for number, value in enum_type.values_by_number.items()}
    # An open enum's unknown number is written as the number, as json_format does.
    return lambda value: names.get(value, value)


def _converter(field: FieldDescriptor) -> Convert | None:
    """How one value of `field` becomes JSON, or None: not mirrored here."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message_type = field.message_type
        assert message_type is not None, "a message field has its message type"
        if message_type.full_name == _TIMESTAMP:
            return _timestamp
        if message_type.full_name.startswith("google.protobuf."):
            return None
        if _plan(message_type) is None:
            return None
        return message_json
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_converter(field)
    if field.type in _INT64:
        return str
    if field.type in _AS_IS:
        return _same
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _bytes
    return None  # floats (json_format's NaN, Infinity, shortest float), groups


def _plan(descriptor: Any) -> _Plan:
    """The plan of a message type (a Descriptor), made on first use."""
    name = descriptor.full_name
    if name in _PLANS:
        return _PLANS[name]
    _PLANS[name] = None  # a message type that holds itself renders via json_format
    plan: dict[FieldDescriptor, tuple[str, Convert | None, str]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            # Keys are strings or integers here (bool keys: json_format's own spelling).
            convert = (
                None if key_field.type == FieldDescriptor.TYPE_BOOL else _converter(value_field)
            )
            kind = "map"
        else:
            convert = _converter(field)
            kind = "list" if field.is_repeated else "one"
        if convert is None:
            return None
        plan[field] = (field.json_name, None if convert is _same else convert, kind)
    if descriptor.extension_ranges:
        return None
    _PLANS[name] = plan
    return plan


def message_json(message: Message) -> dict[str, Any]:
    """json_format.MessageToDict(message), through the message type's plan."""
    plan = _plan(message.DESCRIPTOR)
    if plan is None:
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=False)
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        name, convert, kind = plan[field]
        if kind == "one":
            out[name] = value if convert is None else convert(value)
        elif kind == "list":
            out[name] = list(value) if convert is None else [convert(item) for item in value]
        elif convert is None:
            out[name] = {str(key): item for key, item in value.items()}
        else:
            out[name] = {str(key): convert(item) for key, item in value.items()}
    return out


def planned(descriptor: Any) -> bool:
    """Whether a message type (a Descriptor) renders wholly through plans: then
    its message_json holds only str, int, bool, lists and dicts with str keys
    (no float: a type with one has no plan), what dumps_planned takes."""
    return _plan(descriptor) is not None


def event_json(message: event_pb2.Event) -> bytes:
    """json_format.MessageToDict(message) as JSON with sorted keys and no
    whitespace: the same bytes, without its per-field dispatch."""
    if planned(message.DESCRIPTOR):
        return dumps_planned(message_json(message))
    return dumps(message_json(message))


# One encoder for every body: json.dumps with any argument of its own builds a
# JSONEncoder per call, and the dicts here hold no cycle to look for (plain
# dicts, lists and scalars made above). The events bench's invoice body, thread
# CPU, 10,000 a run, best of five: 6.2 -> 4.6 us a dumps, the whole row_json
# 16.4 -> 15.2 (three alternations); the same bytes
# (tests/unit/test_canonical_json.py).
_ENCODE = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
).encode


def dumps(as_dict: dict[str, Any]) -> bytes:
    """A message's dict as canonical JSON: keys sorted, no whitespace, not escaped."""
    return _ENCODE(as_dict).encode()


# dumps for a dict made by plans only (planned()): msgspec's encoder (a
# dependency already: core/config_schema.py), keys sorted. For these values it writes
# dumps' bytes: the same escapes (", \, the controls as \b \t \n \f \r or
# \u00XX, nothing else: no ASCII escaping, "/" and DEL as they are), keys
# sorted by code point (UTF-8's byte order is the code points' order); every
# code point as a key and as a value checked, and
# tests/unit/test_canonical_json_fast.py for generated dicts. Not for floats:
# json.dumps writes NaN and Infinity (json_format's dicts may hold them), msgspec
# null. The events bench's invoice body, thread CPU, 10,000 a run, best of
# five: 5.2 -> 0.85 us.
_ENCODE_PLANNED = msgspec.json.Encoder(order="sorted").encode


def dumps_planned(as_dict: dict[str, Any]) -> bytes:
    """dumps(as_dict), for a dict of str, int, bool, lists and such dicts only."""
    return _ENCODE_PLANNED(as_dict)
