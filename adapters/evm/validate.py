"""Checks of request fields. Pure; raises INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import re
from collections.abc import Collection

from adapters.evm.errors import invalid_argument
from adapters.evm.normalise import token_asset

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")


def address(field: str, value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise invalid_argument(
            field,
            "INVALID_ADDRESS",
            f"{field} must be 0x followed by 40 hex digits, got {value[:80]!r}",
        )
    return value.lower()


def block_hash(field: str, value: str) -> str:
    if not _HASH.fullmatch(value):
        raise invalid_argument(
            field,
            "INVALID_HASH",
            f"{field} must be 0x followed by 64 hex digits, got {value[:80]!r}",
        )
    return value.lower()


def token(field: str, value: str, chain_id: int, tokens: Collection[str]) -> str:
    """The contract address of a configured token named by its CAIP-19 id."""
    prefix = f"eip155:{chain_id}/erc20:"
    if value.lower().startswith(prefix):
        contract = value[len(prefix) :].lower()
        if contract in tokens and value.lower() == token_asset(chain_id, contract):
            return contract
    configured = ", ".join(token_asset(chain_id, t) for t in tokens) or "none"
    raise invalid_argument(
        field,
        "UNKNOWN_ASSET",
        f"{field} {value[:120]!r} is not a token this adapter serves (configured: {configured})",
    )


def amount(field: str, value: str) -> int:
    """Base units as a decimal string: at most uint256."""
    if not _AMOUNT.fullmatch(value) or int(value) >= 2**256:
        raise invalid_argument(
            field, "INVALID_AMOUNT", f"{field} must be a decimal integer of base units"
        )
    return int(value)
