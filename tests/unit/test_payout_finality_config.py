"""Finality depth per chain ([[chains]] finality_depth) and the destinations
the operator allows ([payouts] allowed_destinations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.chain.config import DEFAULT_FINALITY_DEPTH
from core.config import ConfigError
from core.config import parse as parse_core
from core.payouts.config import PayoutsConfigError
from core.payouts.config import parse as parse_payouts
from tests.support.config import raw

SIGNER = {"target": "localhost:1", "caller_key_file": "core.key"}


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        ({}, DEFAULT_FINALITY_DEPTH),  # 64: two Ethereum epochs
        ({"confirmations": 100}, 100),  # never shallower than the confirmations
        ({"finality_depth": 20}, 20),
        ({"confirmations": 20, "finality_depth": 20}, 20),
    ],
)
def test_finality_depth(chain: dict[str, object], expected: int) -> None:
    config = raw(**chain)
    assert parse_core(config, Path(".")).chains[0].finality_blocks == expected


@pytest.mark.parametrize("depth", [5, -1, "64", True, 1.5])
def test_finality_depth_refused(depth: object) -> None:
    # The chain of `raw` needs 12 confirmations: a shallower finality is refused.
    with pytest.raises(ConfigError, match="finality_depth"):
        parse_core(raw(finality_depth=depth), Path("."))


@pytest.mark.parametrize(
    ("chain", "expected"),
    [({}, 300.0), ({"nonce_fill_after_s": 0}, 0.0), ({"nonce_fill_after_s": 2.5}, 2.5)],
)
def test_nonce_fill_after_s(chain: dict[str, object], expected: float) -> None:
    assert parse_core(raw(**chain), Path(".")).chains[0].nonce_fill_after_s == expected


@pytest.mark.parametrize("wait", [-1, 86_401, True, "300"])
def test_nonce_fill_after_s_refused(wait: object) -> None:
    with pytest.raises(ConfigError, match="nonce_fill_after_s"):
        parse_core(raw(nonce_fill_after_s=wait), Path("."))


def test_allowed_destinations() -> None:
    allowed = ["0x" + "Ab" * 20]
    config = parse_payouts(
        {"signer": SIGNER, "payouts": {"allowed_destinations": allowed}}, Path("/")
    )
    assert config is not None and config.allowed_destinations == {"0x" + "ab" * 20}
    for bad in (["0x12"], "0x" + "ab" * 20, ["0x" + "ab" * 20 + "\n"]):
        with pytest.raises(PayoutsConfigError, match="allowed_destinations"):
            parse_payouts({"signer": SIGNER, "payouts": {"allowed_destinations": bad}}, Path("/"))
