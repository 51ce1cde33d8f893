"""Invoice and payment rows to kassa.core.v1 messages (API answers and event snapshots)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from core import names
from core.invoices.state import State, refundable_of
from core.render.timestamps import timestamp
from kassa.core.v1 import invoice_pb2 as pb

STATE = {s: getattr(pb, f"INVOICE_STATE_{s.name}") for s in State}
_PAYMENT_STATUS = {
    "pending": pb.PAYMENT_STATUS_PENDING,
    "confirming": pb.PAYMENT_STATUS_CONFIRMING,
    "confirmed": pb.PAYMENT_STATUS_CONFIRMED,
    "reorged": pb.PAYMENT_STATUS_REORGED,
}
_STATE_OF = {s.value: s for s in State}


def _metadata(value: str | dict[str, str]) -> dict[str, str] | None:
    """An invoice's metadata (jsonb: text on the core's connections) for the
    message's map; None for the usual empty one, which encodes as no entries:
    parsing and copying "{}" was a tenth of rendering a block's snapshots."""
    if isinstance(value, str):
        return json.loads(value) if value != "{}" else None
    return value or None


def payment(row: Mapping[str, Any], head_height: int | None) -> pb.Payment:
    height = row["block_height"]
    confirmations = 0
    if height is not None and head_height is not None and head_height >= height:
        confirmations = head_height - height + 1
    return pb.Payment(
        tx_hash=row["tx_hash"],
        transfer_index=row["transfer_index"],
        asset=row["asset"],
        from_address=row["from_address"],
        amount=str(row["amount"]),
        block_height=height or 0,
        block_hash=row["block_hash"] or "",
        confirmations=confirmations,
        status=_PAYMENT_STATUS[row["status"]],
    )


def invoice(
    row: Mapping[str, Any],
    payments: Iterable[Mapping[str, Any]] = (),
    head_height: int | None = None,
    state: State | None = None,
) -> pb.Invoice:
    """The invoice as it stands; `state` overrides the row's for event snapshots."""
    message = pb.Invoice(
        name=names.invoice(row["merchant_id"], row["id"]),
        merchant_order_id=row["merchant_order_id"],
        asset=row["asset"],
        network=row["chain"],
        amount_due=str(row["amount_due"]),
        asset_decimals=row["asset_decimals"],
        deposit_address=row["deposit_address"],
        expire_time=timestamp(row["expire_time"]),
        confirmations_required=row["confirmations_required"],
        state=STATE[state or _STATE_OF[row["state"]]],
        flags=[f"INVOICE_FLAG_{f.upper()}" for f in row["flags"]],
        amount_received=str(row["amount_received"]),
        amount_pending=str(row["amount_pending"]),
        metadata=_metadata(row["metadata"]),
        payments=[payment(p, head_height) for p in payments],
        create_time=timestamp(row["create_time"]),
        update_time=timestamp(row["update_time"]),
    )
    message.underpayment_tolerance = str(row["underpayment_tolerance"])
    message.monitoring_end_time.CopyFrom(timestamp(row["monitoring_end_time"]))
    message.amount_refunded = str(row["amount_refunded"])
    message.amount_refundable = str(
        refundable_of(
            _STATE_OF[row["state"]],
            "marked" in row["flags"],
            int(row["amount_received"]),
            int(row["amount_refunded"]),
        )
    )
    if row["mark_state"] is not None:
        message.mark.state = STATE[_STATE_OF[row["mark_state"]]]
        message.mark.reason = row["mark_reason"]
        message.mark.actor = row["mark_actor"]
        message.mark.mark_time.CopyFrom(timestamp(row["mark_time"]))
    if row["price_amount"] is not None:
        message.price.amount = row["price_amount"]
        message.price.currency = row["price_currency"]
    if row["quote_rate"] is not None:
        message.quote.rate = row["quote_rate"]
        message.quote.source = row["quote_source"]
        message.quote.quote_time.CopyFrom(timestamp(row["quote_time"]))
    return message
