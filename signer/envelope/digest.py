"""What an envelope's signatures cover: a domain-separated hash of the body bytes.

The domain prefix keeps a caller's Ed25519 key from being usable to sign
anything else that happens to be a SHA-256 digest.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIGN_REQUEST_DOMAIN = b"kassa.signer.v1.SignRequestBody\x00"


def body_digest(body: bytes) -> bytes:
    return hashlib.sha256(SIGN_REQUEST_DOMAIN + body).digest()


def signature_valid(public_key_raw: bytes, body: bytes, signature: bytes) -> bool:
    """Ed25519 over body_digest(body); any malformed key or signature is simply invalid."""
    if len(public_key_raw) != 32 or len(signature) != 64:
        return False
    try:
        _public_key(public_key_raw).verify(signature, body_digest(body))
    except (InvalidSignature, ValueError):
        return False
    return True


@lru_cache(maxsize=256)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    """The configured keys are few and fixed; a malformed one raises (and is not cached)."""
    return Ed25519PublicKey.from_public_bytes(raw)
