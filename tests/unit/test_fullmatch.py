"""Input checked with `fullmatch`: a trailing newline is not part of a valid value.

`re.match` with `$` accepts "25\\n" (`$` matches before a final newline);
these were the checks that did before the house rule was applied.
"""

from __future__ import annotations

import pytest

from core.domain.assets import chain_of, is_chain_id
from core.domain.money import AmountError, parse_base_units, parse_decimal
from core.rates.formats import parse_rate_text
from core.rates.sources import RateSourceError


@pytest.mark.parametrize("text", ["25\n", "25.5\n", "7\n"])
def test_amounts(text: str) -> None:
    with pytest.raises(AmountError):
        parse_decimal(text)
    with pytest.raises(AmountError):
        parse_base_units(text.replace(".5", ""))
    assert parse_decimal(text.strip()) > 0


def test_rates() -> None:
    with pytest.raises(RateSourceError):
        parse_rate_text("2500.10\n")
    assert str(parse_rate_text("2500.10")) == "2500.10"


def test_chain_and_asset_ids() -> None:
    assert is_chain_id("eip155:1") and not is_chain_id("eip155:1\n")
    asset = "eip155:1/erc20:0x" + "ab" * 20
    assert chain_of(asset) == "eip155:1"
    with pytest.raises(ValueError):
        chain_of(asset + "\n")
