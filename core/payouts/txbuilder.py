"""Unsigned EIP-1559 transactions, encoded exactly as the signer decodes them:
0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to,
value, data, accessList=[]]), canonical integers, empty access list."""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector

from core.domain import assets

# The selector from the ABI signature (eth-utils), the arguments by eth-abi: no hex constants.
ERC20_TRANSFER = bytes(function_signature_to_4byte_selector("transfer(address,uint256)"))
GAS_NATIVE = 21_000
# A plain ERC-20 transfer costs ~35-55k; the limit only caps what a bad token could burn.
GAS_TOKEN = 100_000


def address_bytes(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address}")
    return raw


def erc20_transfer_data(recipient: str, amount_base_units: int) -> bytes:
    return ERC20_TRANSFER + encode(
        ["address", "uint256"], [address_bytes(recipient), amount_base_units]
    )


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int


@dataclass(frozen=True)
class Call:
    """Where the transaction goes and what it carries, from an intent."""

    to: str
    value_wei: int
    data: bytes
    gas_limit: int


def call_for(
    asset: str, destination: str, amount_base_units: int, gas_limit: int | None = None
) -> Call:
    """A native transfer for slip44:60 assets, an ERC-20 transfer otherwise; gas_limit None:
    the asset's default (a sweep carries the limit it was planned and funded with)."""
    if assets.is_native(asset):
        return Call(destination, amount_base_units, b"", gas_limit or GAS_NATIVE)
    contract = assets.contract_of(asset)
    if contract is not None:
        data = erc20_transfer_data(destination, amount_base_units)
        return Call(contract, 0, data, gas_limit or GAS_TOKEN)
    raise ValueError(f"cannot pay out {asset}")


def eip1559(chain_id: int, nonce: int, fees: Fees, call: Call) -> bytes:
    return b"\x02" + bytes(
        rlp.encode(
            [
                chain_id,
                nonce,
                fees.max_priority_fee_per_gas_wei,
                fees.max_fee_per_gas_wei,
                call.gas_limit,
                address_bytes(call.to),
                call.value_wei,
                call.data,
                [],
            ]
        )
    )


def capped_fees(
    base_fee_wei: int, tip_wei: int, max_fee_cap_wei: int, tip_cap_wei: int, min_tip_wei: int = 1
) -> Fees:
    """Fees from the adapter's estimate, never above the configured caps.

    maxFee = 2 * base + tip survives six full blocks of +12.5% base fee.
    """
    tip = min(max(tip_wei, min_tip_wei), tip_cap_wei)
    max_fee = min(2 * base_fee_wei + tip, max_fee_cap_wei)
    return Fees(max(max_fee, tip), tip)
