"""BIP-32 hierarchical deterministic keys: private and public child derivation.

bip-utils does the derivation and the serialisation; ExtendedKey is the
signer's own plain record of a key, so callers hold no library objects and
the functions keep their signatures. Pure logic; the seed arrives decrypted
from the HSM and callers wipe what they can.
"""

from __future__ import annotations

from dataclasses import dataclass

from bip_utils import (
    Base58ChecksumError,
    Bip32KeyData,
    Bip32KeyError,
    Bip32Secp256k1,
    Hash160,
)
from coincurve import PublicKey

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
            return bytes(_context(self).PublicKey().RawCompressed().ToBytes())
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
        context = _context(self)
        if self.is_private:
            return str(context.PrivateKey().ToExtended())
        return str(context.PublicKey().ToExtended())


def _context(key: ExtendedKey) -> Bip32Secp256k1:
    data = Bip32KeyData(key.depth, key.child_number, key.chain_code, key.parent_fingerprint)
    try:
        if key.is_private:
            return Bip32Secp256k1.FromPrivateKey(key.key, data)
        return Bip32Secp256k1.FromPublicKey(key.key, data)
    except (Bip32KeyError, ValueError) as exc:
        raise DerivationError(f"not a valid secp256k1 key: {exc}") from None


def _record(context: Bip32Secp256k1) -> ExtendedKey:
    private = not context.IsPublicOnly()
    return ExtendedKey(
        depth=int(context.Depth().ToInt()),
        parent_fingerprint=bytes(context.ParentFingerPrint().ToBytes()),
        child_number=int(context.Index().ToInt()),
        chain_code=bytes(context.ChainCode().ToBytes()),
        key=bytes(
            context.PrivateKey().Raw().ToBytes()
            if private
            else context.PublicKey().RawCompressed().ToBytes()
        ),
        is_private=private,
    )


def hash160(data: bytes) -> bytes:
    return bytes(Hash160.QuickDigest(data))


def master_key(seed: bytes | bytearray) -> ExtendedKey:
    if not 16 <= len(seed) <= 64:
        raise DerivationError("seed must be 16 to 64 bytes")
    try:
        return _record(Bip32Secp256k1.FromSeed(bytes(seed)))
    except Bip32KeyError as exc:
        raise DerivationError(f"master key out of range; use another seed ({exc})") from None


def _child(parent: ExtendedKey, index: int) -> ExtendedKey:
    try:
        return _record(_context(parent).ChildKey(index))
    except Bip32KeyError as exc:
        raise DerivationError(f"invalid child {index}: {exc}; use the next index") from None


def child_private(parent: ExtendedKey, index: int) -> ExtendedKey:
    """CKDpriv."""
    if not parent.is_private:
        raise DerivationError("private derivation needs a private parent")
    _check_index(index)
    return _child(parent, index)


def child_public(parent: ExtendedKey, index: int) -> ExtendedKey:
    """CKDpub: what the core does to find deposit addresses without the signer."""
    _check_index(index)
    if index >= HARDENED:
        raise DerivationError("hardened children cannot be derived from a public key")
    return _child(parent.neuter(), index)


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
    """A mainnet xpub or xprv; DerivationError (a ValueError) naming why not."""
    try:
        return _record(Bip32Secp256k1.FromExtendedKey(text))
    except Base58ChecksumError as exc:
        raise DerivationError(f"bad base58check checksum: {exc}") from None
    except (Bip32KeyError, ValueError) as exc:
        raise DerivationError(f"not a usable extended key: {exc}") from None


def uncompressed(compressed_public_key: bytes) -> bytes:
    return PublicKey(compressed_public_key).format(compressed=False)
