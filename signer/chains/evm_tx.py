"""EVM transactions the signer agrees to sign: decoding, the signing hash, the signed encoding.

Only two shapes exist here: EIP-1559 (0x02 || rlp of 9 fields) and legacy with
EIP-155 replay protection (rlp of 9 fields ending chainId, 0, 0). Decoding is
strict — canonical RLP, canonical integers, nothing trailing — because the
signer must see exactly the bytes it signs, and two encodings of one
transaction would let a caller smuggle a difference past the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import rlp

from signer.secp256k1 import keccak256

EIP1559_TYPE = 0x02
UINT256_MAX = 2**256 - 1
TxKind = Literal["eip1559", "legacy"]


class TxDecodeError(ValueError):
    """The bytes are not a transaction this signer signs; `problem` is a stable short code."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem


@dataclass(frozen=True)
class EvmTx:
    kind: TxKind
    chain_id: int
    nonce: int
    gas: int
    # Legacy: gas_price; EIP-1559: max_fee_per_gas and max_priority_fee_per_gas.
    gas_price: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    to: bytes  # 20 bytes; empty means contract creation
    value: int
    data: bytes
    access_list: tuple[object, ...] = ()

    def unsigned(self) -> bytes:
        """The canonical unsigned encoding, which is also the signing preimage."""
        if self.kind == "eip1559":
            return bytes([EIP1559_TYPE]) + _rlp(self._fields_1559())
        return _rlp(
            [
                self.nonce,
                self.gas_price,
                self.gas,
                self.to,
                self.value,
                self.data,
                self.chain_id,
                0,
                0,
            ]
        )

    def signing_hash(self) -> bytes:
        return keccak256(self.unsigned())

    def signed(self, r: int, s: int, recovery_id: int) -> bytes:
        """Raw bytes for eth_sendRawTransaction."""
        if recovery_id not in (0, 1):
            raise ValueError("recovery id must be 0 or 1")
        if self.kind == "eip1559":
            return bytes([EIP1559_TYPE]) + _rlp([*self._fields_1559(), recovery_id, r, s])
        v = recovery_id + 35 + 2 * self.chain_id  # EIP-155
        return _rlp([self.nonce, self.gas_price, self.gas, self.to, self.value, self.data, v, r, s])

    def _fields_1559(self) -> list[object]:
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            self.to,
            self.value,
            self.data,
            list(self.access_list),
        ]


def _rlp(item: object) -> bytes:
    """RLP of nested lists of non-negative ints and byte strings, as rlp.encode gives it
    (ints big-endian without leading zeros, 0 as the empty string); written out because the
    library's sedes inference costs more than the rest of a transaction's handling."""
    if isinstance(item, list):
        payload = b"".join([_rlp(x) for x in item])
        return _length_prefix(len(payload), 0xC0) + payload
    if isinstance(item, bool) or not isinstance(item, int | bytes):
        raise TypeError(f"cannot RLP-encode {type(item).__name__}")
    if isinstance(item, int):
        if item < 0:
            raise ValueError("RLP integers are non-negative")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if len(item) == 1 and item[0] < 0x80:
        return item
    return _length_prefix(len(item), 0x80) + item


def _length_prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(encoded)]) + encoded


def tx_hash(signed_raw: bytes) -> str:
    return "0x" + keccak256(signed_raw).hex()


def decode_unsigned(raw: bytes) -> EvmTx:
    if not raw:
        raise TxDecodeError("empty", "the unsigned transaction is empty")
    if raw[0] == EIP1559_TYPE:
        tx = _decode_1559(_rlp_list(raw[1:]))
    elif raw[0] >= 0xC0:
        tx = _decode_legacy(_rlp_list(raw))
    else:
        raise TxDecodeError("unsupported_type", f"transaction type {raw[0]:#04x} is not supported")
    if tx.unsigned() != raw:
        # Belt and braces: whatever strict RLP let through must re-encode to the same bytes.
        raise TxDecodeError("non_canonical", "the transaction does not re-encode to its own bytes")
    return tx


def _rlp_list(payload: bytes) -> list[object]:
    try:
        items = rlp.decode(payload, strict=True)
    except rlp.exceptions.DecodingError as exc:
        raise TxDecodeError("bad_rlp", f"not canonical RLP: {exc}") from None
    except RecursionError:
        # Deeply nested lists exhaust the decoder's recursion: a refusal, never an escape.
        raise TxDecodeError("too_deep", "the RLP nests deeper than the decoder allows") from None
    if not isinstance(items, list):
        raise TxDecodeError("bad_rlp", "the transaction is not an RLP list")
    return items


def _int(item: object, name: str) -> int:
    if not isinstance(item, bytes):
        raise TxDecodeError("bad_field", f"{name} must be a byte string")
    if len(item) > 32:
        raise TxDecodeError("bad_field", f"{name} is wider than 256 bits")
    if item[:1] == b"\x00":
        raise TxDecodeError("non_canonical", f"{name} has leading zero bytes")
    return int.from_bytes(item, "big")


def _bytes(item: object, name: str) -> bytes:
    if not isinstance(item, bytes):
        raise TxDecodeError("bad_field", f"{name} must be a byte string")
    return item


def _to(item: object) -> bytes:
    to = _bytes(item, "to")
    if not to:
        raise TxDecodeError("contract_creation", "contract creation is never signed")
    if len(to) != 20:
        raise TxDecodeError("bad_field", "to must be 20 bytes")
    return to


def _decode_1559(items: list[object]) -> EvmTx:
    if len(items) != 9:
        raise TxDecodeError("bad_field_count", f"EIP-1559 needs 9 fields, got {len(items)}")
    access_list = items[8]
    if not isinstance(access_list, list):
        raise TxDecodeError("bad_field", "accessList must be a list")
    if access_list:
        # An access list changes no value movement, but it is bytes nobody reviews: refuse.
        raise TxDecodeError("access_list", "transactions with an access list are not signed")
    chain_id = _int(items[0], "chainId")
    if chain_id == 0:
        raise TxDecodeError("bad_field", "chainId must be positive")
    return EvmTx(
        kind="eip1559",
        chain_id=chain_id,
        nonce=_int(items[1], "nonce"),
        max_priority_fee_per_gas=_int(items[2], "maxPriorityFeePerGas"),
        max_fee_per_gas=_int(items[3], "maxFeePerGas"),
        gas_price=0,
        gas=_int(items[4], "gas"),
        to=_to(items[5]),
        value=_int(items[6], "value"),
        data=_bytes(items[7], "data"),
    )


def _decode_legacy(items: list[object]) -> EvmTx:
    if len(items) == 6:
        raise TxDecodeError("no_replay_protection", "pre-EIP-155 transactions are not signed")
    if len(items) != 9:
        raise TxDecodeError("bad_field_count", f"legacy EIP-155 needs 9 fields, got {len(items)}")
    chain_id = _int(items[6], "chainId")
    if chain_id == 0:
        raise TxDecodeError("bad_field", "chainId must be positive")
    if _bytes(items[7], "r") or _bytes(items[8], "s"):
        raise TxDecodeError("already_signed", "an unsigned EIP-155 transaction ends chainId, 0, 0")
    return EvmTx(
        kind="legacy",
        chain_id=chain_id,
        nonce=_int(items[0], "nonce"),
        gas_price=_int(items[1], "gasPrice"),
        max_fee_per_gas=0,
        max_priority_fee_per_gas=0,
        gas=_int(items[2], "gas"),
        to=_to(items[3]),
        value=_int(items[4], "value"),
        data=_bytes(items[5], "data"),
    )
