"""What a decoded transaction does with value: a native transfer or an ERC-20 transfer(), nothing else.

This is the only place that reads EVM calldata. Any call other than
`transfer(address,uint256)` with exactly its 68 bytes is refused, so an
approve(), a transferFrom() or trailing bytes can never ride along. The
selector comes from the ABI (eth-utils) and the arguments go through
eth-abi's strict decoder, which refuses an address word with its upper 12
bytes set; TRC-20 calldata (signer.chains.tron_tx) is the same ABI.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError, NonEmptyPaddingBytes
from eth_utils.abi import function_signature_to_4byte_selector

from signer.chains.evm_tx import EvmTx, TxDecodeError

TRANSFER_SIGNATURE = "transfer(address,uint256)"
TRANSFER_TYPES = ("address", "uint256")
TRANSFER_SELECTOR = bytes(function_signature_to_4byte_selector(TRANSFER_SIGNATURE))
TRANSFER_CALLDATA_BYTES = 4 + 32 * len(TRANSFER_TYPES)


@dataclass(frozen=True)
class Transfer:
    # The EIP-155 chain id the transaction commits to; None where the transaction names no
    # chain (TRON: the body's chain is the only statement of it).
    chain_id: int | None
    token: str | None  # the token contract (EVM: lowercase 0x; TRON: base58); None: native coin
    recipient: str  # EVM: lowercase 0x address; TRON: base58check T-address
    amount: int  # base units


def _address(raw: bytes) -> str:
    return "0x" + raw.hex()


def decode_transfer_call(data: bytes) -> tuple[bytes, int]:
    """(recipient's 20 bytes, amount) of exactly `transfer(address,uint256)` calldata."""
    if data[:4] != TRANSFER_SELECTOR:
        raise TxDecodeError("unknown_call", f"calldata selector 0x{data[:4].hex()} is not transfer")
    if len(data) != TRANSFER_CALLDATA_BYTES:
        raise TxDecodeError(
            "calldata_length",
            f"transfer calldata must be {TRANSFER_CALLDATA_BYTES} bytes, got {len(data)}",
        )
    try:
        recipient, amount = decode(TRANSFER_TYPES, data[4:])
    except NonEmptyPaddingBytes:
        raise TxDecodeError("bad_recipient", "the recipient word has non-zero high bytes") from None
    except DecodingError as exc:  # pragma: no cover - 64 bytes always decode otherwise
        raise TxDecodeError("bad_calldata", f"transfer arguments do not decode: {exc}") from None
    return bytes.fromhex(str(recipient)[2:]), int(amount)


def transfer_of(tx: EvmTx) -> Transfer:
    if not tx.data:
        return Transfer(tx.chain_id, None, _address(tx.to), tx.value)
    recipient, amount = decode_transfer_call(tx.data)
    if tx.value != 0:
        raise TxDecodeError("value_with_call", "an ERC-20 transfer must carry no native value")
    return Transfer(tx.chain_id, _address(tx.to), _address(recipient), amount)


def transfer_calldata(recipient: str | bytes, amount: int) -> bytes:
    """The encoding transfer_of accepts; for callers building transactions and for tests."""
    return TRANSFER_SELECTOR + encode(TRANSFER_TYPES, [recipient, amount])
