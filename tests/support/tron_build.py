"""TRON raw_data the way a TRON payout builder in the core would write it, for the tests."""

from __future__ import annotations

import time

from signer.chains import tron_address
from signer.chains.transfer import transfer_calldata
from signer.chains.tron_tx import build_raw_data

MAINNET = "tron:0x2b6653dc"
NILE = "tron:0xcd8690dc"
TRX = f"{MAINNET}/slip44:195"
# Tether's USDT contract on TRON mainnet (41a614f803b6fd780986a42c78ec9c7f77e6ded13c).
USDT_CONTRACT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USDT = f"{MAINNET}/trc20:{USDT_CONTRACT}"


def address(fill: int) -> str:
    """A well-formed TRON address of 20 bytes `fill`."""
    return tron_address.from_bytes(b"\x41" + bytes([fill]) * 20)


def raw_data(
    owner: str,
    to: str,
    amount: int,
    token: str | None = None,
    fee_limit: int | None = None,
    *,
    data: bytes | None = None,
) -> bytes:
    """TRX (token None) or a TRC-20 transfer(to, amount) on `token`, expiring in a minute."""
    now_ms = int(time.time() * 1000)
    if token is not None and data is None:
        data = transfer_calldata(tron_address.to_bytes(to)[1:], amount)
    return build_raw_data(
        owner=owner,
        to=to,
        amount=amount if token is None else 0,
        token=token,
        fee_limit=(0 if token is None else 30_000_000) if fee_limit is None else fee_limit,
        expiration_ms=now_ms + 60_000,
        timestamp_ms=now_ms,
        ref_block_bytes=b"\x9a\x1c",
        ref_block_hash=bytes.fromhex("6e2b07f10b5a2c3d"),
        data=data or b"",
    )
