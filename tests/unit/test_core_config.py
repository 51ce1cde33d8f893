"""The core's configuration: confirmation tiers and refusals with clear messages."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from core.config import ConfigError, parse
from tests.support.config import raw


def test_confirmations_follow_the_smallest_tier_covering_the_fiat_value() -> None:
    config = parse(
        raw(
            tiers=[
                {"up_to": "50.00", "currency": "USD", "confirmations": 1},
                {"up_to": "1000", "currency": "USD", "confirmations": 6},
            ]
        ),
        Path("."),
    )
    chain = config.chains[0]
    assert chain.confirmations_for(Decimal("25.00"), "USD") == 1
    assert chain.confirmations_for(Decimal("50.00"), "USD") == 1
    assert chain.confirmations_for(Decimal("50.01"), "USD") == 6
    assert chain.confirmations_for(Decimal("5000"), "USD") == 12
    # Another currency, or an invoice priced in the asset itself, gets the chain default.
    assert chain.confirmations_for(Decimal("1"), "EUR") == 12
    assert chain.confirmations_for(None, None) == 12


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ({"confirmations": 0}, "confirmations must be at least 1"),
        ({"tiers": [{"up_to": "-5", "confirmations": 1}]}, "up_to"),
        ({"tiers": [{"up_to": "5", "confirmations": -1}]}, "confirmations must be at least 0"),
        ({"pending_ttl_s": 0}, "pending_ttl_s"),
        ({"id": "bitcoin"}, "CAIP-2"),
    ],
)
def test_bad_chain_config_is_refused_naming_the_key(chain: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw(**chain), Path("."))


def test_only_a_tier_may_allow_zero_conf_which_turns_on_the_mempool_watch() -> None:
    tiers = [{"up_to": "50.00", "currency": "USD", "confirmations": 0}]
    chain = parse(raw(tiers=tiers, pending_ttl_s=60), Path(".")).chains[0]
    assert chain.zero_conf and chain.pending_ttl_s == 60
    assert chain.confirmations_for(Decimal("49"), "USD") == 0
    assert chain.confirmations_for(Decimal("51"), "USD") == 12
    plain = parse(raw(), Path(".")).chains[0]
    assert not plain.zero_conf and plain.pending_ttl_s == 3600


def test_rates_config_errors_surface_as_config_errors() -> None:
    bad = raw()
    bad["rates"] = {"sources": ["nowhere"]}
    with pytest.raises(ConfigError, match="nowhere"):
        parse(bad, Path("."))
