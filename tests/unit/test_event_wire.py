"""render.stream_response_bytes: the pre-serialized StreamEvents response is
exactly the message the renderer builds, for every resource type (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.render import events as render
from kassa.core.v1 import event_pb2, invoice_pb2, payout_pb2, reconciliation_pb2

_TEXT = st.text(max_size=300)


def _row(resource_type: str, payload: bytes, sequence: int, when: datetime) -> dict[str, object]:
    return {
        "sequence": sequence,
        "id": uuid.UUID(int=sequence),
        "type": f"{resource_type}.changed",
        "resource_type": resource_type,
        "payload": payload,
        "create_time": when,
    }


@given(
    name=_TEXT,
    order=_TEXT,
    amount=st.integers(0, 2**256 - 1),
    metadata=st.dictionaries(st.text(max_size=20), _TEXT, max_size=5),
    sequence=st.integers(1, 2**63 - 1),
    micros=st.integers(0, 10**15),
)
def test_an_invoice_event_is_the_rendered_message(
    name: str, order: str, amount: int, metadata: dict[str, str], sequence: int, micros: int
) -> None:
    invoice = invoice_pb2.Invoice(
        name=name, merchant_order_id=order, amount_due=str(amount), metadata=metadata
    )
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    row = _row("invoice", invoice.SerializeToString(deterministic=True), sequence, when)
    wire = render.stream_response_bytes(row)
    assert event_pb2.StreamEventsResponse.FromString(wire) == event_pb2.StreamEventsResponse(
        event=render.event(row)
    )


def test_every_resource_type_lands_in_its_own_field() -> None:
    now = datetime.now(UTC)
    messages = {
        "invoice": invoice_pb2.Invoice(name="merchants/m/invoices/i"),
        "payout": payout_pb2.Payout(name="merchants/m/payouts/p"),
        "reconciliation": reconciliation_pb2.Reconciliation(name="reconciliations/r"),
    }
    assert set(messages) == set(render.RESOURCES)
    for i, (resource_type, message) in enumerate(messages.items(), 1):
        row = _row(resource_type, message.SerializeToString(), i, now)
        parsed = event_pb2.StreamEventsResponse.FromString(render.stream_response_bytes(row))
        assert parsed.event.WhichOneof("resource") == render.RESOURCES[resource_type][1]
        assert parsed == event_pb2.StreamEventsResponse(event=render.event(row))
        assert parsed.event.sequence == i and parsed.event.create_time.ToDatetime(UTC) == now
