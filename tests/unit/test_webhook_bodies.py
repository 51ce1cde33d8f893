"""A delivery's body is its event's canonical JSON, rendered once per event in
a process (core/webhooks/worker._Bodies), whatever the number of endpoints."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from core.render import events as resources
from core.webhooks import worker
from kassa.core.v1 import invoice_pb2


def row(n: int, event_id: uuid.UUID | None = None) -> dict[str, Any]:
    snapshot = invoice_pb2.Invoice(name=f"merchants/m/invoices/i{n}", amount_due=str(n))
    return {
        "event_id": event_id or uuid.uuid4(),
        "id": event_id or uuid.uuid4(),
        "sequence": n,
        "type": "invoice.created",
        "resource_type": "invoice",
        "payload": snapshot.SerializeToString(),
        "create_time": datetime(2026, 1, 1, tzinfo=UTC),
    }


def test_each_event_is_rendered_once_and_exactly_as_the_renderer_does() -> None:
    bodies = worker._Bodies()
    one = row(1)
    first = bodies.of(one)
    assert first == resources.to_json(resources.event(one))
    assert bodies.of(dict(one)) is first  # the second endpoint's delivery: not rendered again
    other = row(2)
    assert bodies.of(other) == resources.to_json(resources.event(other)) != first


def test_the_same_sequence_in_another_database_is_another_event() -> None:
    bodies = worker._Bodies()
    a, b = row(7), row(7)  # same sequence, other event ids (another database)
    b["payload"] = invoice_pb2.Invoice(name="merchants/m/invoices/other").SerializeToString()
    assert bodies.of(a) != bodies.of(b)


def test_the_cache_is_bounded() -> None:
    bodies = worker._Bodies()
    rows = [row(i) for i in range(worker._Bodies.SIZE + 10)]
    for r in rows:
        bodies.of(r)
    assert len(bodies._bodies) == worker._Bodies.SIZE
    assert rows[0]["event_id"] not in bodies._bodies  # oldest out
    assert rows[-1]["event_id"] in bodies._bodies
