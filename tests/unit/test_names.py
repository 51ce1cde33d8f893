"""Resource names: every kind formats and parses back, and nothing else parses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import names

merchant_ids = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)
ids = st.from_regex(r"[a-z0-9]{1,40}", fullmatch=True)
keys = st.from_regex(r"[0-9a-f]{16}", fullmatch=True)


@pytest.mark.parametrize(
    ("parse", "name", "expected"),
    [
        (names.parse_merchant, "merchants/acme", "acme"),
        (names.parse_merchant, "merchants/acme\n", None),  # `$` would have accepted it
        (names.parse_merchant, "merchants/Acme", None),
        (names.parse_merchant, "merchants/-acme", None),
        (names.parse_merchant, "merchants/acme/invoices/x", None),
        (names.parse_invoice, "merchants/acme/invoices/inv1", ("acme", "inv1")),
        (names.parse_invoice, "merchants/acme/invoices/inv1\n", None),
        (names.parse_invoice, "merchants/acme/payouts/inv1", None),
        (names.parse_invoice, "merchants/acme/invoices/" + "a" * 41, None),
        (names.parse_payout, "merchants/acme/payouts/p1", ("acme", "p1")),
        (names.parse_payout, "merchants/acme/invoices/p1", None),
        (
            names.parse_api_key,
            "merchants/acme/apiKeys/0123456789abcdef",
            ("acme", "0123456789abcdef"),
        ),
        (names.parse_api_key, "merchants/acme/apiKeys/0123456789ABCDEF", None),
        (
            names.parse_webhook_endpoint,
            "merchants/a/webhookEndpoints/0123456789abcdef",
            ("a", "0123456789abcdef"),
        ),
        (names.parse_webhook_endpoint, "merchants/a/webhookEndpoints/-", None),
        (names.parse_sweep, "sweeps/s1", "s1"),
        (names.parse_sweep, "sweeps/s1\n", None),
        (names.parse_sweep, "merchants/a/sweeps/s1", None),
    ],
)
def test_parse(parse: object, name: str, expected: object) -> None:
    assert parse(name) == expected  # type: ignore[operator]


def test_any_endpoint_only_where_allowed() -> None:
    assert names.parse_webhook_endpoint("merchants/a/webhookEndpoints/-", allow_any=True) == (
        "a",
        "-",
    )


def test_delivery() -> None:
    d = "0b7e5f4e-3c1a-4f7e-9d2a-0123456789ab"
    name = f"merchants/a/webhookEndpoints/0123456789abcdef/deliveries/{d}"
    assert names.parse_delivery(name) == ("a", "0123456789abcdef", d)
    assert names.parse_delivery(name + "\n") is None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("req-1", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("a b", False),
        ("a\n", False),
    ],
)
def test_request_id(text: str, ok: bool) -> None:
    assert names.is_request_id(text) is ok


@given(merchant_ids, ids)
def test_invoice_round_trip(m: str, i: str) -> None:
    assert names.parse_invoice(names.invoice(m, i)) == (m, i)
    assert names.parse_merchant(names.merchant(m)) == m
    assert names.parse_payout(names.payout(m, i)) == (m, i)
    assert names.parse_sweep(names.sweep(i)) == i


@given(merchant_ids, keys)
def test_key_and_endpoint_round_trip(m: str, k: str) -> None:
    assert names.parse_api_key(names.api_key(m, k)) == (m, k)
    assert names.parse_webhook_endpoint(names.webhook_endpoint(m, k)) == (m, k)


@given(st.text(max_size=80))
def test_a_parsed_name_formats_back_to_itself(text: str) -> None:
    parsed = names.parse_invoice(text)
    if parsed is not None:
        assert names.invoice(*parsed) == text
