"""BIP-32 hierarchical deterministic keys: private and public child derivation.

Pure logic; the seed arrives decrypted from the HSM and callers wipe what they can.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from Crypto.Hash import RIPEMD160

from signer.hd.base58 import b58check_decode, b58check_encode
from signer.secp256k1 import CURVE_ORDER

HARDENED = 0x80000000
XPUB_VERSION = 0x0488B21E
XPRV_VERSION = 0x0488ADE4
ACCOUNT_PATH = "m/44'/60'/0'"


class DerivationError(ValueError):
    """The (astronomically unlikely) invalid child, or a malformed path or key."""


@dataclass(frozen=True)
class ExtendedKey:
    depth: int
    parent_fingerprint: bytes
    child_number: int
    chain_code: bytes
    # 32-byte secret for private keys, 33-byte compressed point for public keys.
    key: bytes
    is_private: bool

    def public_key(self) -> bytes:
        """Compressed SEC1 point."""
        if self.is_private:
            return PrivateKey(self.key).public_key.format(compressed=True)
        return self.key

    def fingerprint(self) -> bytes:
        return hash160(self.public_key())[:4]

    def neuter(self) -> ExtendedKey:
        return ExtendedKey(
            self.depth,
            self.parent_fingerprint,
            self.child_number,
            self.chain_code,
            self.public_key(),
            is_private=False,
        )

    def serialize(self) -> str:
        version = XPRV_VERSION if self.is_private else XPUB_VERSION
        key_data = b"\0" + self.key if self.is_private else self.key
        return b58check_encode(
            version.to_bytes(4, "big")
            + bytes([self.depth])
            + self.parent_fingerprint
            + self.child_number.to_bytes(4, "big")
            + self.chain_code
            + key_data
        )


def hash160(data: bytes) -> bytes:
    return RIPEMD160.new(hashlib.sha256(data).digest()).digest()


def master_key(seed: bytes | bytearray) -> ExtendedKey:
    if not 16 <= len(seed) <= 64:
        raise DerivationError("seed must be 16 to 64 bytes")
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    secret, chain_code = digest[:32], digest[32:]
    if not 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
        raise DerivationError("master key out of range; use another seed")
    return ExtendedKey(0, b"\0\0\0\0", 0, chain_code, secret, is_private=True)


def _split(chain_code: bytes, data: bytes) -> tuple[bytes, bytes]:
    digest = hmac.new(chain_code, data, hashlib.sha512).digest()
    tweak = digest[:32]
    if int.from_bytes(tweak, "big") >= CURVE_ORDER:
        raise DerivationError("invalid child: I_L >= n; use the next index")
    return tweak, digest[32:]


def child_private(parent: ExtendedKey, index: int) -> ExtendedKey:
    """CKDpriv."""
    if not parent.is_private:
        raise DerivationError("private derivation needs a private parent")
    _check_index(index)
    if index >= HARDENED:
        data = b"\0" + parent.key + index.to_bytes(4, "big")
    else:
        data = parent.public_key() + index.to_bytes(4, "big")
    tweak, chain_code = _split(parent.chain_code, data)
    child = (int.from_bytes(tweak, "big") + int.from_bytes(parent.key, "big")) % CURVE_ORDER
    if child == 0:
        raise DerivationError("invalid child: zero key; use the next index")
    return ExtendedKey(
        parent.depth + 1,
        parent.fingerprint(),
        index,
        chain_code,
        child.to_bytes(32, "big"),
        is_private=True,
    )


def child_public(parent: ExtendedKey, index: int) -> ExtendedKey:
    """CKDpub: what the core does to find deposit addresses without the signer."""
    _check_index(index)
    if index >= HARDENED:
        raise DerivationError("hardened children cannot be derived from a public key")
    parent_public = parent.public_key()
    tweak, chain_code = _split(parent.chain_code, parent_public + index.to_bytes(4, "big"))
    try:
        point = PublicKey(parent_public).add(tweak)
    except ValueError as exc:
        raise DerivationError("invalid child: point at infinity; use the next index") from exc
    return ExtendedKey(
        parent.depth + 1,
        parent.fingerprint(),
        index,
        chain_code,
        point.format(compressed=True),
        is_private=False,
    )


def _check_index(index: int) -> None:
    if not 0 <= index < 2**32:
        raise DerivationError(f"child index {index} out of range")


def parse_path(path: str) -> list[int]:
    parts = path.strip().split("/")
    if not parts or parts[0] != "m":
        raise DerivationError(f"path must start with 'm': {path!r}")
    indexes = []
    for part in parts[1:]:
        hardened = part.endswith(("'", "h", "H"))
        digits = part[:-1] if hardened else part
        if not digits.isdigit() or int(digits) >= HARDENED:
            raise DerivationError(f"bad path component {part!r} in {path!r}")
        indexes.append(int(digits) + (HARDENED if hardened else 0))
    return indexes


def derive_path(root: ExtendedKey, path: str) -> ExtendedKey:
    key = root
    for index in parse_path(path):
        key = child_private(key, index) if key.is_private else child_public(key, index)
    return key


def parse_extended_key(text: str) -> ExtendedKey:
    data = b58check_decode(text)
    if len(data) != 78:
        raise DerivationError("extended key must be 78 bytes")
    version = int.from_bytes(data[:4], "big")
    key_data = data[45:]
    if version == XPUB_VERSION:
        PublicKey(key_data)  # rejects points not on the curve
        return ExtendedKey(
            data[4],
            data[5:9],
            int.from_bytes(data[9:13], "big"),
            data[13:45],
            key_data,
            is_private=False,
        )
    if version == XPRV_VERSION and key_data[0] == 0:
        return ExtendedKey(
            data[4],
            data[5:9],
            int.from_bytes(data[9:13], "big"),
            data[13:45],
            key_data[1:],
            is_private=True,
        )
    raise DerivationError(f"unknown extended key version {version:#010x}")


def uncompressed(compressed_public_key: bytes) -> bytes:
    return PublicKey(compressed_public_key).format(compressed=False)
