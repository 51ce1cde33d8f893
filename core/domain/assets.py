"""Asset and chain identifiers (CAIP-2 chains, CAIP-19 assets): the one place
that parses an asset id. Pure: no I/O.

An EVM asset is `eip155:{chain id}/slip44:60` (the native coin) or
`eip155:{chain id}/erc20:0x{40 lowercase hex}` (a token contract).

A TRON chain is `tron:0x{8 hex}` (the chain id java-tron's JSON-RPC answers to
eth_chainId, the last 4 bytes of the genesis block hash: mainnet
`tron:0x2b6653dc`, Nile `tron:0xcd8690dc`, Shasta `tron:0x94a9059e`); its
assets are `tron:…/slip44:195` (TRX) and `tron:…/trc20:T…` (a TRC-20
contract in base58check, whose case is part of the address). The core names
TRON assets but serves no TRON chain yet (docs/chains.md): is_chain_id stays
the set of chains a [[chains]] entry may name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bip_utils import TrxAddrDecoder

_CHAIN = re.compile(r"eip155:[1-9][0-9]{0,15}")
_ASSET = re.compile(r"(eip155:[1-9][0-9]{0,15})/(slip44:60|erc20:0x[0-9a-f]{40})")
NATIVE = "slip44:60"
_TRON_CHAIN = re.compile(r"tron:0x[0-9a-f]{8}")
_TRON_ASSET = re.compile(r"(tron:0x[0-9a-f]{8})/(slip44:195|trc20:T[1-9A-HJ-NP-Za-km-z]{33})")
TRON_NATIVE = "slip44:195"


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
    """A chain the core serves: an EVM chain (CAIP-2 eip155)."""
    return _CHAIN.fullmatch(text) is not None


def is_tron_chain(text: str) -> bool:
    return _TRON_CHAIN.fullmatch(text) is not None


def chain_of(asset_id: str) -> str:
    """The CAIP-2 chain of a CAIP-19 asset id; ValueError if malformed."""
    match = _ASSET.fullmatch(asset_id) or _TRON_ASSET.fullmatch(asset_id)
    if not match:
        raise ValueError(f"not a CAIP-19 EVM or TRON asset id: {asset_id!r}")
    if match.re is _TRON_ASSET:
        contract = contract_of(asset_id)
        if contract is not None and not is_tron_address(contract):
            raise ValueError(f"not a TRON address (checksum): {contract!r}")
    return match.group(1)


def chain_number(chain: str) -> int:
    """The EIP-155 chain id of a CAIP-2 chain (`eip155:1` -> 1)."""
    return int(chain.removeprefix("eip155:"))


def native(chain: str) -> str:
    """The chain's native coin (what gas is paid in)."""
    return f"{chain}/{TRON_NATIVE if is_tron_chain(chain) else NATIVE}"


def is_native(asset_id: str) -> bool:
    return asset_id.partition("/")[2].startswith("slip44:")


def contract_of(asset_id: str) -> str | None:
    """The token contract of an erc20 or trc20 asset id, None for any other."""
    kind, _, ref = asset_id.partition("/")[2].partition(":")
    return ref if kind in ("erc20", "trc20") else None


def is_tron_address(text: str) -> bool:
    """base58check with the 0x41 prefix and a good checksum (bip-utils)."""
    try:
        TrxAddrDecoder.DecodeAddr(text)
    except (ValueError, TypeError):
        return False
    return True
