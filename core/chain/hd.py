"""Deposit addresses from the account xpub, without the signer.

BIP-32 public derivation (CKDpub) of m/44'/60'/0'/0/i from the account-level
xpub the signer exported; coincurve does the point arithmetic, which is an
order of magnitude faster than a general-purpose HD library.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from coincurve import PublicKey
from Crypto.Hash import keccak

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
XPUB_VERSION = bytes.fromhex("0488b21e")
_HARDENED = 0x80000000


class XpubError(ValueError):
    pass


def _b58decode_check(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _B58.find(char)
        if digit < 0:
            raise XpubError(f"invalid base58 character {char!r}")
        number = number * 58 + digit
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\x00" * (len(text) - len(text.lstrip("1"))) + raw
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise XpubError("bad checksum")
    return payload


@dataclass(frozen=True)
class ExtendedPublicKey:
    public_key: bytes  # compressed SEC1, 33 bytes
    chain_code: bytes
    depth: int

    @classmethod
    def parse(cls, xpub: str) -> ExtendedPublicKey:
        payload = _b58decode_check(xpub.strip())
        if len(payload) != 78 or payload[:4] != XPUB_VERSION:
            raise XpubError("not a BIP-32 mainnet xpub")
        key = payload[45:78]
        PublicKey(key)  # raises on a point not on the curve
        return cls(public_key=key, chain_code=payload[13:45], depth=payload[4])

    def child(self, index: int) -> ExtendedPublicKey:
        if not 0 <= index < _HARDENED:
            raise ValueError("public derivation needs a non-hardened index")
        digest = hmac.new(
            self.chain_code, self.public_key + index.to_bytes(4, "big"), hashlib.sha512
        ).digest()
        # coincurve rejects a tweak >= n or a point at infinity (probability ~2^-127).
        child_key = PublicKey(self.public_key).add(digest[:32])
        return ExtendedPublicKey(child_key.format(compressed=True), digest[32:], self.depth + 1)


def evm_address(public_key: bytes) -> str:
    """0x-lowercase EVM address of a SEC1 public key."""
    uncompressed = PublicKey(public_key).format(compressed=False)
    return "0x" + keccak.new(data=uncompressed[1:], digest_bits=256).digest()[-20:].hex()


class DepositAddresses:
    """Derives m/44'/60'/0'/0/i addresses from the account xpub (m/44'/60'/0')."""

    def __init__(self, account_xpub: str) -> None:
        account = ExtendedPublicKey.parse(account_xpub)
        if account.depth != 3:
            raise XpubError(f"expected an account-level xpub (depth 3), got depth {account.depth}")
        self._external = account.child(0)

    def address(self, index: int) -> str:
        return evm_address(self._external.child(index).public_key)
