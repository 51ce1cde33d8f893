"""[signer], [payouts] and [sweeps] of the core's configuration.

Without a [signer] table payouts are off (the PayoutService is not served).
Kept apart from core/config.py, which calls `parse` and turns
PayoutsConfigError into its own ConfigError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.payouts.signer_client import SignerTarget

GWEI = 10**9


class PayoutsConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SweepsConfig:
    """[sweeps]: deposit addresses' funds go to a treasury per chain (docs/payouts.md)."""

    treasury: dict[str, str]  # chain (CAIP-2) -> lowercase 0x address
    # Seconds between planning passes; 0: only on demand (SweepService.RunSweeps).
    interval_s: float = 0.0
    # An invoice is swept once settled this long (its refunds are paid from the hot key).
    min_age_s: float = 0.0
    # Below this (base units) an address is left alone: its gas would cost more.
    min_amount: dict[str, int] = field(default_factory=dict)  # asset -> base units
    default_min_amount: int = 1


@dataclass(frozen=True)
class PayoutsConfig:
    signer: SignerTarget
    hot_key_id: str = "hot-1"
    # Fee caps (wei per gas): a payout never offers more, replacements included.
    max_fee_per_gas_wei: int = 500 * GWEI
    max_priority_fee_per_gas_wei: int = 10 * GWEI
    # The signer accepts bodies valid for at most 60 s.
    request_lifetime_s: int = 50
    # A broadcast transaction still unmined after this long is replaced with higher fees.
    replace_after_s: float = 20.0
    # A candidate the node no longer knows is sent again after this long.
    rebroadcast_after_s: float = 5.0
    poll_interval_s: float = 0.5
    # Destinations refused by default (token contracts, Kassa's own addresses)
    # that the operator allows anyway, lowercase (core/payouts/destinations.py).
    allowed_destinations: frozenset[str] = frozenset()
    # [sweeps] with enabled = true; None: no sweeps.
    sweeps: SweepsConfig | None = None


def _path(table: dict[str, Any], key: str, base: Path) -> Path | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayoutsConfigError(f"signer.{key} must be a string")
    return base / value


def _wei(table: dict[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    text = str(value)
    if not text.isdigit() or int(text) <= 0:
        raise PayoutsConfigError(f"payouts.{key} must be a positive integer (wei), as a string")
    return int(text)


def parse(raw: dict[str, Any], base: Path) -> PayoutsConfig | None:
    signer = raw.get("signer")
    if signer is None:
        if raw.get("sweeps", {}).get("enabled", False):
            raise PayoutsConfigError("sweeps need a [signer]: the deposit keys sign there")
        return None
    target = signer.get("target")
    if not isinstance(target, str) or not target:
        raise PayoutsConfigError("signer.target (host:port) is required")
    key_file = _path(signer, "caller_key_file", base)
    if key_file is None:
        raise PayoutsConfigError("signer.caller_key_file (the core's Ed25519 key) is required")
    tls = [_path(signer, k, base) for k in ("ca_file", "cert_file", "key_file")]
    if any(p is None for p in tls) and any(p is not None for p in tls):
        raise PayoutsConfigError("signer.ca_file, cert_file and key_file go together")
    payouts = raw.get("payouts", {})
    config = PayoutsConfig(
        signer=SignerTarget(
            target=target,
            ca_file=tls[0],
            cert_file=tls[1],
            key_file=tls[2],
            caller_key_id=str(signer.get("caller_key_id", "core")),
            caller_key_file=key_file,
            server_name=str(signer.get("server_name", "")),
            startup_timeout_s=float(
                signer.get("startup_timeout_s", SignerTarget.startup_timeout_s)
            ),
            health_interval_s=float(
                signer.get("health_interval_s", SignerTarget.health_interval_s)
            ),
        ),
        hot_key_id=str(payouts.get("hot_key_id", PayoutsConfig.hot_key_id)),
        max_fee_per_gas_wei=_wei(payouts, "max_fee_per_gas", PayoutsConfig.max_fee_per_gas_wei),
        max_priority_fee_per_gas_wei=_wei(
            payouts, "max_priority_fee_per_gas", PayoutsConfig.max_priority_fee_per_gas_wei
        ),
        request_lifetime_s=int(payouts.get("request_lifetime_s", PayoutsConfig.request_lifetime_s)),
        replace_after_s=float(payouts.get("replace_after_s", PayoutsConfig.replace_after_s)),
        rebroadcast_after_s=float(
            payouts.get("rebroadcast_after_s", PayoutsConfig.rebroadcast_after_s)
        ),
        poll_interval_s=float(payouts.get("poll_interval_s", PayoutsConfig.poll_interval_s)),
        allowed_destinations=_addresses(payouts, "allowed_destinations"),
    )
    sweeps = _sweeps(raw.get("sweeps"))
    if sweeps is not None:
        config = replace(config, sweeps=sweeps)
    if config.signer.startup_timeout_s < 0 or config.signer.health_interval_s <= 0:
        raise PayoutsConfigError(
            "signer.startup_timeout_s must be >= 0 and signer.health_interval_s > 0"
        )
    if not 5 <= config.request_lifetime_s <= 60:
        raise PayoutsConfigError("payouts.request_lifetime_s must be in 5..60 (the signer's limit)")
    return config


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _addresses(table: dict[str, Any], key: str) -> frozenset[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(a, str) and _ADDRESS.fullmatch(a) for a in value
    ):
        raise PayoutsConfigError(f"payouts.{key} must be a list of 0x addresses")
    return frozenset(a.lower() for a in value)


def _sweeps(table: dict[str, Any] | None) -> SweepsConfig | None:
    if table is None or not table.get("enabled", False):
        return None
    treasury = table.get("treasury", {})
    if not isinstance(treasury, dict) or not treasury:
        raise PayoutsConfigError("sweeps.treasury must map each chain to its treasury address")
    for chain, address in treasury.items():
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address) or int(address, 16) == 0:
            raise PayoutsConfigError(f"sweeps.treasury.{chain!r} must be a 0x address")
    raw_min = table.get("min_amount", {})
    if not isinstance(raw_min, dict):
        raise PayoutsConfigError("sweeps.min_amount maps assets to base units (strings)")
    config = SweepsConfig(
        treasury={c: a.lower() for c, a in treasury.items()},
        interval_s=float(table.get("interval_s", 0.0)),
        min_age_s=float(table.get("min_age_s", 0.0)),
        min_amount={a: _wei(raw_min, a, 1) for a in raw_min},
    )
    if config.interval_s < 0 or config.min_age_s < 0:
        raise PayoutsConfigError("sweeps.interval_s and min_age_s must not be negative")
    return config
