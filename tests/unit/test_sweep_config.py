"""[sweeps] parsing (core/payouts/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.payouts.config import PayoutsConfigError, parse

SIGNER = {"target": "localhost:1", "caller_key_file": "core.key"}
TREASURY = "0x" + "Ab" * 20


def test_sweeps_off_unless_enabled() -> None:
    assert parse({"signer": SIGNER}, Path("/")).sweeps is None  # type: ignore[union-attr]
    off = {"signer": SIGNER, "sweeps": {"enabled": False, "treasury": {"eip155:1": TREASURY}}}
    assert parse(off, Path("/")).sweeps is None  # type: ignore[union-attr]


def test_sweeps_parsed() -> None:
    raw = {
        "signer": SIGNER,
        "sweeps": {
            "enabled": True,
            "interval_s": 600,
            "min_age_s": 3600,
            "treasury": {"eip155:1": TREASURY},
            "min_amount": {"eip155:1/erc20:0x" + "cd" * 20: "50000000"},
        },
    }
    sweeps = parse(raw, Path("/")).sweeps  # type: ignore[union-attr]
    assert sweeps is not None
    assert sweeps.treasury == {"eip155:1": TREASURY.lower()}
    assert sweeps.interval_s == 600 and sweeps.min_age_s == 3600
    assert sweeps.min_amount == {"eip155:1/erc20:0x" + "cd" * 20: 50_000_000}


@pytest.mark.parametrize(
    "sweeps",
    [
        {"enabled": True},
        {"enabled": True, "treasury": {"eip155:1": "0x1234"}},
        {"enabled": True, "treasury": {"eip155:1": "0x" + "00" * 20}},
        {"enabled": True, "treasury": {"eip155:1": TREASURY}, "interval_s": -1},
        {"enabled": True, "treasury": {"eip155:1": TREASURY}, "min_amount": {"a": "-5"}},
    ],
)
def test_bad_sweeps_refused(sweeps: dict[str, object]) -> None:
    with pytest.raises(PayoutsConfigError):
        parse({"signer": SIGNER, "sweeps": sweeps}, Path("/"))


def test_sweeps_need_a_signer() -> None:
    with pytest.raises(PayoutsConfigError, match="signer"):
        parse({"sweeps": {"enabled": True, "treasury": {"eip155:1": TREASURY}}}, Path("/"))
