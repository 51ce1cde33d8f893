"""Invoice and payout events for the outbox: a snapshot of the resource as each
step left it.

The writers of invoice and payout state (core/invoices/lifecycle.py,
core/payouts/payouts.py) hand their rows here rather than rendering messages
themselves: rendering belongs to core/render, which the deciders and writers
do not import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.events.outbox import NewEvent
from core.invoices.state import State
from core.render import invoices as render
from core.render import payouts as render_payouts

if TYPE_CHECKING:
    from kassa.core.v1.invoice_pb2 import Invoice


def invoice_events(
    row: Mapping[str, Any],
    payments: Iterable[Mapping[str, Any]],
    head_height: int | None,
    announced: Sequence[tuple[str, State]],
) -> list[NewEvent]:
    """One event per (type, state); the snapshots differ only in their state."""
    return snapshot_events(invoice_snapshot(row, payments, head_height), row, announced)


def invoice_snapshot(
    row: Mapping[str, Any], payments: Iterable[Mapping[str, Any]], head_height: int | None
) -> Invoice:
    """The invoice as it stands, rendered once for all of its events (`snapshot_events`)."""
    return render.invoice(row, payments, head_height)


def snapshot_events(
    snapshot: Invoice, row: Mapping[str, Any], announced: Sequence[tuple[str, State]]
) -> list[NewEvent]:
    """One event per (type, state) of a rendered snapshot, which differ only in
    their state."""
    events = []
    for event_type, state in announced:
        snapshot.state = render.STATE[state]
        events.append(
            NewEvent(
                event_type,
                row["merchant_id"],
                snapshot.name,
                snapshot.SerializeToString(deterministic=True),
            )
        )
    return events


def invoice_event(
    event_type: str, row: Mapping[str, Any], payments: Iterable[Mapping[str, Any]] = ()
) -> NewEvent:
    """The invoice as it stands, e.g. for invoice.created."""
    snapshot = render.invoice(row, payments)
    return NewEvent(
        event_type,
        row["merchant_id"],
        snapshot.name,
        snapshot.SerializeToString(deterministic=True),
    )


def payout_event(
    event_type: str,
    row: Any,
    transactions: Sequence[Any],
    approvals: Sequence[str],
) -> NewEvent:
    """The payout (or refund) as it stands, e.g. for payout.confirmed."""
    snapshot = render_payouts.payout(row, transactions, approvals)
    return NewEvent(
        event_type,
        row["merchant_id"],
        snapshot.name,
        snapshot.SerializeToString(deterministic=True),
        resource_type="payout",
    )
