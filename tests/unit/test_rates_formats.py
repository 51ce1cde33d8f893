"""Parsing Coinbase and Kraken responses: real-looking payloads, error payloads, exactness."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.rates.formats import parse_coinbase, parse_kraken, parse_rate_text
from core.rates.sources import RateSourceError

COINBASE_ETH = json.dumps(
    {
        "data": {
            "currency": "ETH",
            "rates": {
                "AED": "11064.9185",
                "EUR": "2771.3",
                "USD": "3012.555",
                "USDT": "3013.0170022537",
                "BTC": "0.04521",
            },
        }
    }
).encode()

KRAKEN_ETHUSD = json.dumps(
    {
        "error": [],
        "result": {
            "XETHZUSD": {
                "a": ["3012.10000", "1", "1.000"],
                "b": ["3012.09000", "7", "7.000"],
                "c": ["3012.30000", "0.01000000"],
                "v": ["1234.5", "5678.9"],
                "p": ["3001.1", "2999.2"],
                "t": [1234, 5678],
                "l": ["2950.0", "2950.0"],
                "h": ["3050.0", "3080.0"],
                "o": "2990.00",
            }
        },
    }
).encode()


def test_coinbase_rate_is_the_exact_decimal_string() -> None:
    assert parse_coinbase(COINBASE_ETH, "ETH", "USD") == Decimal("3012.555")
    assert str(parse_coinbase(COINBASE_ETH, "ETH", "USDT")) == "3013.0170022537"


def test_coinbase_missing_currency_is_refused() -> None:
    with pytest.raises(RateSourceError, match="no JPY rate for ETH"):
        parse_coinbase(COINBASE_ETH, "ETH", "JPY")


def test_coinbase_answer_for_another_currency_is_refused() -> None:
    with pytest.raises(RateSourceError, match="'ETH', not BTC"):
        parse_coinbase(COINBASE_ETH, "BTC", "USD")


def test_coinbase_error_payload_is_reported() -> None:
    body = b'{"errors":[{"id":"invalid_request","message":"Invalid currency (NOPE)"}]}'
    with pytest.raises(RateSourceError, match=r"API error: Invalid currency \(NOPE\)"):
        parse_coinbase(body, "NOPE", "USD")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"data":{}}', "no data.rates"),
        (b'{"data":{"currency":"ETH","rates":{"USD":"0"}}}', "not positive"),
        (b'{"data":{"currency":"ETH","rates":{"USD":"-3000"}}}', "not a plain decimal"),
        (b'{"data":{"currency":"ETH","rates":{"USD":"NaN"}}}', "not a plain decimal"),
        (b'{"data":{"currency":"ETH","rates":{"USD":"3e3"}}}', "not a plain decimal"),
        (b'{"data":{"currency":"ETH","rates":{"USD":null}}}', "NoneType"),
        (b'{"data":{"currency":"ETH","rates":{"USD":true}}}', "bool"),
    ],
)
def test_coinbase_garbage_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(RateSourceError, match=reason):
        parse_coinbase(body, "ETH", "USD")


def test_kraken_uses_last_trade_price_under_the_canonical_pair_name() -> None:
    assert parse_kraken(KRAKEN_ETHUSD, "ETHUSD") == Decimal("3012.30000")


def test_kraken_error_payload_is_reported() -> None:
    body = b'{"error":["EQuery:Unknown asset pair"],"result":{}}'
    with pytest.raises(RateSourceError, match="EQuery:Unknown asset pair"):
        parse_kraken(body, "NOPEUSD")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"error":[],"result":{}}', "no ticker"),
        (b'{"error":[],"result":{"A":{"c":["1"]},"B":{"c":["2"]}}}', "2 tickers"),
        (b'{"error":[],"result":{"XETHZUSD":{"a":["1","1","1"]}}}', "no last trade"),
        (b'{"error":[],"result":{"XETHZUSD":{"c":[]}}}', "no last trade"),
        (b'{"error":[],"result":{"XETHZUSD":{"c":["0.00000","1"]}}}', "not positive"),
        (b'{"error":[],"result":{"XETHZUSD":"x"}}', "not a JSON object"),
        (b'{"error":[], "result": ', "not valid JSON"),
    ],
)
def test_kraken_garbage_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(RateSourceError, match=reason):
        parse_kraken(body, "ETHUSD")


def test_json_numbers_never_pass_through_a_binary_float() -> None:
    # 0.1 + 0.2 style: 3012.55 as a float is 3012.5500000000001818989403545856475830078125.
    body = b'{"data":{"currency":"ETH","rates":{"USD":3012.55}}}'
    assert str(parse_coinbase(body, "ETH", "USD")) == "3012.55"


@given(
    st.decimals(
        min_value=Decimal("0.000000001"), max_value=Decimal("10") ** 12, places=9, allow_nan=False
    )
)
def test_any_plain_positive_decimal_roundtrips_exactly(rate: Decimal) -> None:
    text = format(rate, "f")
    assert parse_rate_text(text) == rate
    # Digits and exponent are kept as sent (format "f": str() writes 1E-9 for tiny rates).
    assert format(parse_rate_text(text), "f") == text


def test_absurdly_long_numbers_are_refused() -> None:
    with pytest.raises(RateSourceError):
        parse_rate_text("1" * 31)
