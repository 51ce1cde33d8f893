"""An invoice's metadata in its message: the usual empty "{}" is skipped, not
parsed, and renders exactly as the parsed form would."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from core.render import invoices as render

NOW = datetime(2030, 6, 1, tzinfo=UTC)
ROW = {
    "id": "inv1",
    "merchant_id": "m",
    "merchant_order_id": "o1",
    "chain": "eip155:1",
    "asset": "eip155:1/slip44:60",
    "asset_decimals": 18,
    "amount_due": 100,
    "price_amount": None,
    "quote_rate": None,
    "deposit_address": "0x" + "ab" * 20,
    "confirmations_required": 3,
    "expire_time": NOW,
    "state": "confirming",
    "flags": [],
    "amount_received": 0,
    "amount_pending": 100,
    "create_time": NOW,
    "update_time": NOW,
    "underpayment_tolerance": 0,
    "monitoring_end_time": NOW,
    "amount_refunded": 0,
    "mark_state": None,
}


def test_empty_metadata_renders_as_no_entries() -> None:
    as_text = render.invoice({**ROW, "metadata": "{}"})
    as_dict = render.invoice({**ROW, "metadata": {}})
    assert dict(as_text.metadata) == {}
    assert as_text.SerializeToString(deterministic=True) == as_dict.SerializeToString(
        deterministic=True
    )


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4))
def test_metadata_as_stored_text_or_parsed_renders_the_same(metadata: dict[str, str]) -> None:
    as_text = render.invoice({**ROW, "metadata": json.dumps(metadata)})
    as_dict = render.invoice({**ROW, "metadata": metadata})
    assert dict(as_text.metadata) == metadata
    assert as_text.SerializeToString(deterministic=True) == as_dict.SerializeToString(
        deterministic=True
    )
