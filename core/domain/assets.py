"""Asset and chain identifiers (CAIP-2 chains, CAIP-19 assets): the one place
that parses an asset id. Pure: no I/O.

An EVM asset is `eip155:{chain id}/slip44:60` (the native coin) or
`eip155:{chain id}/erc20:0x{40 lowercase hex}` (a token contract).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHAIN = re.compile(r"eip155:[1-9][0-9]{0,15}")
_ASSET = re.compile(r"(eip155:[1-9][0-9]{0,15})/(slip44:60|erc20:0x[0-9a-f]{40})")
NATIVE = "slip44:60"


@dataclass(frozen=True)
class Asset:
    id: str  # CAIP-19, lowercase
    chain: str  # CAIP-2
    symbol: str
    decimals: int

    @property
    def contract(self) -> str | None:
        """The token contract address, or None for the native asset."""
        return contract_of(self.id)


def is_chain_id(text: str) -> bool:
    return _CHAIN.fullmatch(text) is not None


def chain_of(asset_id: str) -> str:
    """The CAIP-2 chain of a CAIP-19 asset id; ValueError if malformed."""
    match = _ASSET.fullmatch(asset_id)
    if not match:
        raise ValueError(f"not a CAIP-19 EVM asset id: {asset_id!r}")
    return match.group(1)


def chain_number(chain: str) -> int:
    """The EIP-155 chain id of a CAIP-2 chain (`eip155:1` -> 1)."""
    return int(chain.removeprefix("eip155:"))


def native(chain: str) -> str:
    """The chain's native coin (what gas is paid in)."""
    return f"{chain}/{NATIVE}"


def is_native(asset_id: str) -> bool:
    return asset_id.partition("/")[2].startswith("slip44:")


def contract_of(asset_id: str) -> str | None:
    """The token contract of an erc20 asset id, None for any other."""
    kind, _, ref = asset_id.partition("/")[2].partition(":")
    return ref if kind == "erc20" else None
