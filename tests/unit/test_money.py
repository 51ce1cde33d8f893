"""Amount parsing and fiat conversion."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain.money import AmountError, fiat_to_base_units, parse_base_units, parse_decimal


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
