"""Asset and chain identifiers (CAIP-2 chains, CAIP-19 assets)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHAIN = re.compile(r"^eip155:[1-9][0-9]{0,15}$")
_ASSET = re.compile(r"^(eip155:[1-9][0-9]{0,15})/(slip44:60|erc20:0x[0-9a-f]{40})$")


@dataclass(frozen=True)
class Asset:
    id: str  # CAIP-19, lowercase
    chain: str  # CAIP-2
    symbol: str
    decimals: int

    @property
    def contract(self) -> str | None:
        """The token contract address, or None for the native asset."""
        kind, _, ref = self.id.partition("/")[2].partition(":")
        return ref if kind == "erc20" else None


def is_chain_id(text: str) -> bool:
    return bool(_CHAIN.match(text))


def chain_of(asset_id: str) -> str:
    """The CAIP-2 chain of a CAIP-19 asset id; ValueError if malformed."""
    match = _ASSET.match(asset_id)
    if not match:
        raise ValueError(f"not a CAIP-19 EVM asset id: {asset_id!r}")
    return match.group(1)
