"""Base58Check, the text form of BIP-32 extended keys (bip-utils)."""

from __future__ import annotations

from bip_utils import Base58ChecksumError, Base58Decoder, Base58Encoder


def b58check_encode(payload: bytes) -> str:
    return str(Base58Encoder.CheckEncode(payload))


def b58check_decode(text: str) -> bytes:
    """The payload; ValueError (naming the checksum) on bad text or checksum."""
    try:
        return bytes(Base58Decoder.CheckDecode(text))
    except Base58ChecksumError as exc:
        raise ValueError(f"base58check checksum mismatch: {exc}") from None
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"invalid base58check text: {exc}") from None
