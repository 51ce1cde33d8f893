"""secp256k1 facts the signer needs: low-S normalisation, recovery ids, EVM addresses."""

from __future__ import annotations

from dataclasses import dataclass

from coincurve import PublicKey
from Crypto.Hash import keccak

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_ORDER = CURVE_ORDER // 2


class SignatureError(ValueError):
    pass


@dataclass(frozen=True)
class RecoverableSignature:
    r: int
    s: int
    recovery_id: int

    def rs_bytes(self) -> bytes:
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big")


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def address_of(uncompressed_public_key: bytes) -> str:
    if len(uncompressed_public_key) != 65 or uncompressed_public_key[0] != 0x04:
        raise ValueError("expected a 65-byte uncompressed SEC1 public key")
    return "0x" + keccak256(uncompressed_public_key[1:])[-20:].hex()


def normalise_low_s(r: int, s: int) -> tuple[int, int]:
    """EIP-2 rejects s above n/2; (r, n - s) is the same signature's twin."""
    if not (0 < r < CURVE_ORDER and 0 < s < CURVE_ORDER):
        raise SignatureError("r or s out of range")
    return (r, CURVE_ORDER - s) if s > HALF_ORDER else (r, s)


def recoverable(digest: bytes, rs: bytes, uncompressed_public_key: bytes) -> RecoverableSignature:
    """PKCS#11 gives only r||s; the recovery id is found by trying both parities."""
    if len(digest) != 32 or len(rs) != 64:
        raise SignatureError("expected a 32-byte digest and a 64-byte r||s")
    r, s = normalise_low_s(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    compact = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    for recovery_id in (0, 1):
        try:
            candidate = PublicKey.from_signature_and_message(
                compact + bytes([recovery_id]), digest, hasher=None
            )
        except Exception:  # noqa: S112 (an unrecoverable parity is just the wrong one)
            continue
        if candidate.format(compressed=False) == uncompressed_public_key:
            return RecoverableSignature(r, s, recovery_id)
    raise SignatureError("signature does not recover to the key's public key")
