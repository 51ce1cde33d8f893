"""What a decoded transaction does with value: a native transfer or an ERC-20 transfer(), nothing else.

This is the only place that reads calldata. Any call other than
`transfer(address,uint256)` with exactly its 68 bytes is refused, so an
approve(), a transferFrom() or trailing bytes can never ride along.
"""

from __future__ import annotations

from dataclasses import dataclass

from signer.chains.evm_tx import EvmTx, TxDecodeError

TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")  # keccak("transfer(address,uint256)")[:4]
TRANSFER_CALLDATA_BYTES = 4 + 32 + 32


@dataclass(frozen=True)
class Transfer:
    chain_id: int
    token: str | None  # lowercase 0x address of the ERC-20 contract; None for the native coin
    recipient: str  # lowercase 0x address
    amount: int  # base units


def _address(raw: bytes) -> str:
    return "0x" + raw.hex()


def transfer_of(tx: EvmTx) -> Transfer:
    if not tx.data:
        return Transfer(tx.chain_id, None, _address(tx.to), tx.value)
    if tx.data[:4] != TRANSFER_SELECTOR:
        raise TxDecodeError(
            "unknown_call", f"calldata selector 0x{tx.data[:4].hex()} is not transfer"
        )
    if len(tx.data) != TRANSFER_CALLDATA_BYTES:
        raise TxDecodeError(
            "calldata_length",
            f"transfer calldata must be {TRANSFER_CALLDATA_BYTES} bytes, got {len(tx.data)}",
        )
    if tx.value != 0:
        raise TxDecodeError("value_with_call", "an ERC-20 transfer must carry no native value")
    word = tx.data[4:36]
    if any(word[:12]):
        raise TxDecodeError("bad_recipient", "the recipient word has non-zero high bytes")
    amount = int.from_bytes(tx.data[36:68], "big")
    return Transfer(tx.chain_id, _address(tx.to), _address(word[12:]), amount)


def transfer_calldata(recipient: str, amount: int) -> bytes:
    """The encoding transfer_of accepts; for callers building transactions and for tests."""
    return (
        TRANSFER_SELECTOR
        + bytes(12)
        + bytes.fromhex(recipient.removeprefix("0x"))
        + amount.to_bytes(32, "big")
    )
