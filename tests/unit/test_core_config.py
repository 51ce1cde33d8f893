"""The core's configuration: confirmation tiers and refusals with clear messages."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import ConfigError, parse
from core.webhooks.sealing import new_kek_line

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"


os.environ.setdefault("KASSA_TEST_WEBHOOK_KEK", new_kek_line("test"))


def raw(**chain: object) -> dict[str, object]:
    return {
        # Plaintext links and a KEK from the environment: these tests are about chains.
        "server": {"dev_plaintext": True},
        "adapters": {"dev_plaintext": True},
        "secrets": {"webhook_kek_env": "KASSA_TEST_WEBHOOK_KEK"},
        "database": {"dsn": "postgresql://x@127.0.0.1/kassa"},
        "hd": {"account_xpub": XPUB},
        "chains": [{"id": "eip155:1", "adapter": "127.0.0.1:1", "confirmations": 12, **chain}],
        "assets": [{"id": "eip155:1/slip44:60", "symbol": "ETH", "decimals": 18}],
    }


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
