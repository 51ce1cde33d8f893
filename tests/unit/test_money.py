"""Amount parsing and fiat conversion."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain.money import (
    AmountError,
    fiat_to_base_units,
    fiat_violations,
    minor_units,
    parse_base_units,
    parse_decimal,
)


def test_usd_price_at_par_in_a_six_decimal_token() -> None:
    assert fiat_to_base_units(Decimal("25.00"), Decimal("1.00"), 6) == 25_000_000


def test_conversion_rounds_up_never_down() -> None:
    # 10 USD at 3 USD per unit with 0 decimals: 3.33… units → 4.
    assert fiat_to_base_units(Decimal("10"), Decimal("3"), 0) == 4


@pytest.mark.parametrize("text", ["-5", "abc", "1e6", "", " 5", "5.", ".5", "0", "0.00", "1,5"])
def test_bad_decimals_are_refused(text: str) -> None:
    with pytest.raises(AmountError):
        parse_decimal(text)


@pytest.mark.parametrize("text", ["-1", "1.5", "0", "01", "", "x", str(2**256)])
def test_bad_base_units_are_refused(text: str) -> None:
    with pytest.raises(AmountError):
        parse_base_units(text)


def test_largest_uint256_is_accepted() -> None:
    assert parse_base_units(str(2**256 - 1)) == 2**256 - 1


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=2)
rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4)


@given(prices, rates, st.integers(min_value=0, max_value=18))
def test_due_covers_the_price_by_less_than_one_base_unit(
    price: Decimal, rate: Decimal, decimals: int
) -> None:
    due = fiat_to_base_units(price, rate, decimals)
    scale = Decimal(10) ** decimals
    assert Decimal(due) * rate >= price * scale
    assert Decimal(due - 1) * rate < price * scale


# --- ISO-4217 minor units and the configured maximum (issue 19) -------------------

MAX = Decimal(1_000_000_000)


@pytest.mark.parametrize(
    ("price", "currency", "fields"),
    [
        ("25.00", "USD", []),
        ("25.1", "USD", []),
        ("25.100", "USD", []),  # the same value as 25.10
        ("25.001", "USD", ["price.amount"]),
        ("25.0000000001", "USD", ["price.amount"]),
        ("2500", "JPY", []),
        ("2500.5", "JPY", ["price.amount"]),
        ("1.234", "BHD", []),  # three minor units
        ("1.2345", "BHD", ["price.amount"]),
        ("1000000000", "USD", []),
        ("1000000000.01", "USD", ["price.amount"]),
        ("1" + "0" * 40, "USD", ["price.amount"]),
        ("1" + "0" * 40 + ".001", "USD", ["price.amount", "price.amount"]),
        ("25.00", "ABC", ["price.currency"]),  # not ISO-4217
        ("25.00", "XAU", ["price.currency"]),  # no minor unit
    ],
)
def test_fiat_prices_are_checked_against_minor_units_and_the_maximum(
    price: str, currency: str, fields: list[str]
) -> None:
    assert [f for f, _ in fiat_violations(Decimal(price), currency, MAX)] == fields


def test_minor_units_are_iso_4217s() -> None:
    assert (minor_units("USD"), minor_units("JPY"), minor_units("KWD")) == (2, 0, 3)
    assert minor_units("usd") is None and minor_units("XXX") is None


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=0, max_value=6))
def test_a_price_is_refused_exactly_when_finer_than_the_cent_or_over_the_maximum(
    cents: int, extra_digits: int
) -> None:
    price = Decimal(cents) / Decimal(100) / (Decimal(10) ** extra_digits)
    finer = price != price.quantize(Decimal("0.01"))
    over = price > MAX
    assert bool(fiat_violations(price, "USD", MAX)) is (finer or over)
