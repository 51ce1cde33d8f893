"""core/render/canonical_json.event_json, and so events.to_json (the webhook
bodies, the relay's messages), writes exactly json_format's canonical JSON
bytes, for generated events of every resource."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from core.render import canonical_json as body
from core.render import events as resources
from kassa.core.v1 import event_pb2, invoice_pb2

_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: Any, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _RANGES:
        low, high = _RANGES[kind]
        return st.integers(low, high)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=12)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=12)
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = sorted(field.enum_type.values_by_number)
        # Open enums keep numbers they do not name; json_format writes the number.
        return st.one_of(st.sampled_from(known), st.integers(0, 1000))
    assert kind == FieldDescriptor.TYPE_MESSAGE, field.full_name
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return st.builds(
            Timestamp,
            seconds=st.integers(-62_135_596_800, 253_402_300_799),
            nanos=st.integers(0, 999_999_999),
        )
    return messages(field.message_type, depth + 1)


def _json_format(message: Message) -> bytes:
    """The reference: json_format's dict, keys sorted, no whitespace (what
    to_json wrote before canonical_json, and the contract it keeps)."""
    as_dict = json_format.MessageToDict(message, always_print_fields_with_no_presence=False)
    return json.dumps(as_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _is_map(field: Any) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def messages(descriptor: Any, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of a type with any of its fields set (nested ones up to a depth)."""
    cls: Any = resources.RESOURCES.get(descriptor.name.lower(), (None,))[0]
    if cls is None or cls.DESCRIPTOR is not descriptor:
        from google.protobuf import message_factory

        cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if _is_map(field):
            key = _scalar(field.message_type.fields_by_name["key"], depth)
            value = _scalar(field.message_type.fields_by_name["value"], depth)
            parts[field.name] = st.dictionaries(key, value, max_size=3)
        elif field.is_repeated:
            parts[field.name] = st.lists(_scalar(field, depth), max_size=3)
        else:
            parts[field.name] = st.one_of(st.none(), _scalar(field, depth))

    def build(values: dict[str, Any]) -> Message:
        message: Message = cls()
        for field in descriptor.fields:
            value = values[field.name]
            target = getattr(message, field.name)
            if _is_map(field):
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated:
                for item in value:
                    if isinstance(item, Message):
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif value is None:
                continue
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, field.name, value)
        return message

    return st.fixed_dictionaries(parts).map(build)


def events() -> st.SearchStrategy[event_pb2.Event]:
    def wrap(pair: tuple[str, Message], head: tuple[int, str]) -> event_pb2.Event:
        (field, resource), (sequence, kind) = pair, head
        event = event_pb2.Event(id=str(uuid.uuid4()), sequence=sequence, type=kind)
        event.create_time.FromDatetime(datetime(2026, 11, 30, 14, 0, tzinfo=UTC))
        getattr(event, field).CopyFrom(resource)
        return event

    def of(field: str, cls: type[Message]) -> st.SearchStrategy[tuple[str, Message]]:
        return st.tuples(st.just(field), messages(cls.DESCRIPTOR))

    resource = st.one_of(*(of(field, cls) for cls, field in resources.RESOURCES.values()))
    head = st.tuples(st.integers(0, 2**63 - 1), st.text(max_size=20))
    return st.builds(wrap, resource, head)


def test_every_resource_renders_through_the_plans_not_the_fallback() -> None:
    # Otherwise the property below would compare json_format with itself.
    assert body._plan(event_pb2.Event.DESCRIPTOR) is not None
    for cls, _ in resources.RESOURCES.values():
        assert body._plan(cls.DESCRIPTOR) is not None, cls.DESCRIPTOR.full_name


@settings(max_examples=400, deadline=None)
@given(events())
def test_the_bytes_are_the_renderers(event: event_pb2.Event) -> None:
    assert body.event_json(event) == _json_format(event)
    assert resources.to_json(event) == _json_format(event)


def _rows() -> st.SearchStrategy[dict[str, Any]]:
    """Outbox rows of every resource, as asyncpg returns them (an aware create_time),
    and a naive time too (timestamp() reads it as UTC)."""
    resource = st.one_of(
        *(
            st.tuples(st.just(kind), messages(cls.DESCRIPTOR))
            for kind, (cls, _) in resources.RESOURCES.items()
        )
    )
    zone = st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    )
    # Fractions of none, whole milliseconds and microseconds: ToJsonString's three forms.
    micros = st.one_of(
        st.just(0), st.integers(0, 999).map(lambda ms: ms * 1000), st.integers(0, 999_999)
    )
    when = st.builds(
        lambda at, micro: at.replace(microsecond=micro),
        st.datetimes(datetime(1900, 1, 1), datetime(9998, 12, 31), timezones=st.none() | zone),
        micros,
    )

    def row(
        pair: tuple[str, Message], event_id: uuid.UUID, sequence: int, kind: str, at: datetime
    ) -> dict[str, Any]:
        resource_type, message = pair
        return {
            "id": event_id,
            "sequence": sequence,
            "type": kind,
            "resource_type": resource_type,
            "payload": message.SerializeToString(),
            "create_time": at,
        }

    sequences = st.one_of(st.just(0), st.integers(1, 2**63 - 1))
    return st.builds(row, resource, st.uuids(), sequences, st.text(max_size=20), when)


@settings(max_examples=400, deadline=None)
@given(_rows())
def test_a_row_renders_as_its_event(row: dict[str, Any]) -> None:
    """row_json (the webhook bodies) writes what to_json(event(row)) writes."""
    event = resources.event(row)
    assert resources.row_json(row) == resources.to_json(event) == _json_format(event)


def test_an_invoice_event_as_the_bench_sends_it() -> None:
    invoice = invoice_pb2.Invoice(
        name="merchants/bench/invoices/inv000000000001",
        amount_due="25000000",
        confirmations_required=3,
        state=invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT,
        price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
        metadata={"cart": "c-1234", "customer": "cust-\u00e9"},
    )
    row = {
        "id": uuid.uuid4(),
        "sequence": 2**40,
        "type": "invoice.created",
        "resource_type": "invoice",
        "payload": invoice.SerializeToString(),
        "create_time": datetime(2026, 11, 30, 14, 0, 0, 123456, tzinfo=UTC),
    }
    event = resources.event(row)
    rendered = resources.to_json(event)
    assert rendered == _json_format(event) == resources.row_json(row)
    assert b'"sequence":"1099511627776"' in rendered  # 64-bit integers as strings
    assert b'"state":"INVOICE_STATE_AWAITING_PAYMENT"' in rendered
    assert "cust-\u00e9".encode() in rendered  # not escaped, as the renderer writes it


def test_a_message_type_with_a_field_not_mirrored_renders_through_json_format() -> None:
    from google.protobuf import struct_pb2

    struct = struct_pb2.Struct()
    struct.update({"rate": 1.5, "ok": True})
    assert body._plan(struct_pb2.Struct.DESCRIPTOR) is None  # a well-known type
    assert body.message_json(struct) == {"rate": 1.5, "ok": True}
