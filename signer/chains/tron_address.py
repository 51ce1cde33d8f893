"""TRON addresses: 0x41 || the last 20 bytes of keccak256(public key), in base58check (bip-utils).

The base58check text ("T…") is the canonical form everywhere in Kassa (intents,
policy, CAIP-19 asset ids); the 21-byte form is what raw_data carries.
"""

from __future__ import annotations

from bip_utils import Base58Encoder, TrxAddrDecoder, TrxAddrEncoder

PREFIX = 0x41
ADDRESS_BYTES = 21


def is_address(text: str) -> bool:
    """A base58check TRON address with the 0x41 prefix and a good checksum."""
    try:
        TrxAddrDecoder.DecodeAddr(text)
    except (ValueError, TypeError):
        return False
    return True


def to_bytes(text: str) -> bytes:
    """The 21-byte form of a base58check TRON address; ValueError naming why not."""
    try:
        return bytes([PREFIX]) + bytes(TrxAddrDecoder.DecodeAddr(text))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is not a TRON address: {exc}") from None


def from_bytes(raw: bytes) -> str:
    """base58check text of a 21-byte 0x41 address; ValueError for anything else."""
    if len(raw) != ADDRESS_BYTES or raw[0] != PREFIX:
        raise ValueError("a TRON address is 21 bytes starting 0x41")
    return str(Base58Encoder.CheckEncode(raw))


def of_public_key(public_key: bytes) -> str:
    """The address of a SEC1 secp256k1 public key (compressed or uncompressed)."""
    return str(TrxAddrEncoder.EncodeKey(public_key))
