"""Webhook signing secrets sealed at rest: AES-256-GCM under a key-encryption key (KEK).

The KEKs live outside the database (a file or the environment, [secrets]),
so a database dump or backup alone does not give the secrets that sign
webhooks. A keyring holds one or more KEKs, one per line, `id:base64(32 bytes)`;
the first seals, every one of them unseals. Rotation: put a new KEK first,
restart (the core re-seals every secret under it at start, or run
`kassa-core reseal-secrets`), then drop the old line (docs/operations.md).

Sealed form: b"K1" | len(id) | id | nonce(12) | ciphertext+tag. The endpoint id
is the associated data, so a sealed secret copied onto another endpoint's row
does not open. Errors name the KEK id and the endpoint, never the plaintext.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"K1"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEK_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class KeyringError(ValueError):
    """A keyring's text cannot be used (the message never repeats a key)."""


class SealError(ValueError):
    """A sealed secret cannot be opened (unknown KEK, tampered bytes, wrong endpoint)."""


@dataclass(frozen=True)
class Keyring:
    # (id, key), the current KEK first.
    keys: tuple[tuple[str, bytes], ...] = field(repr=False)

    def __post_init__(self) -> None:
        assert self.keys, "a keyring holds at least one KEK"
        assert all(len(k) == KEY_BYTES for _, k in self.keys)
        assert len({i for i, _ in self.keys}) == len(self.keys), "KEK ids are unique"

    def __repr__(self) -> str:
        return f"Keyring(ids={self.ids})"

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(i for i, _ in self.keys)

    def key(self, kek_id: str) -> bytes | None:
        return next((k for i, k in self.keys if i == kek_id), None)


def new_kek_line(kek_id: str) -> str:
    """A fresh KEK as a keyring line (for operators and the local stack)."""
    if not _KEK_ID.fullmatch(kek_id):
        raise KeyringError("a KEK id is 1-64 of A-Z a-z 0-9 _ . -")
    return f"{kek_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def parse_keyring(text: str) -> Keyring:
    keys: list[tuple[str, bytes]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kek_id, sep, encoded = line.partition(":")
        if not sep or not _KEK_ID.fullmatch(kek_id):
            raise KeyringError(f"line {n}: expected id:base64-key, id of A-Z a-z 0-9 _ . -")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise KeyringError(f"line {n} (KEK {kek_id!r}): the key is not base64") from None
        if len(key) != KEY_BYTES:
            raise KeyringError(f"line {n} (KEK {kek_id!r}): a KEK is {KEY_BYTES} bytes")
        if any(i == kek_id for i, _ in keys):
            raise KeyringError(f"line {n}: KEK {kek_id!r} appears twice")
        keys.append((kek_id, key))
    if not keys:
        raise KeyringError("no KEK: one line id:base64(32 random bytes) at least")
    return Keyring(tuple(keys))


def _aad(endpoint_id: str) -> bytes:
    return b"kassa webhook secret\x00" + endpoint_id.encode()


def seal(keyring: Keyring, endpoint_id: str, secret: str) -> bytes:
    kek_id, key = keyring.keys[0]
    nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: fine far below 2^32 seals per KEK
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), _aad(endpoint_id))
    ident = kek_id.encode()
    return MAGIC + bytes([len(ident)]) + ident + nonce + sealed


def kek_of(sealed: bytes) -> str:
    """The id of the KEK a sealed secret is under."""
    if sealed[:2] != MAGIC or len(sealed) < 3:
        raise SealError("not a sealed webhook secret")
    size = sealed[2]
    return sealed[3 : 3 + size].decode(errors="replace")


def unseal(keyring: Keyring, endpoint_id: str, sealed: bytes) -> str:
    kek_id = kek_of(sealed)
    key = keyring.key(kek_id)
    if key is None:
        raise SealError(
            f"the secret of webhook endpoint {endpoint_id} is sealed under KEK {kek_id!r}, "
            f"which the keyring does not hold (it holds {', '.join(keyring.ids)})"
        )
    start = 3 + len(kek_id.encode())
    nonce, body = sealed[start : start + NONCE_BYTES], sealed[start + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, _aad(endpoint_id)).decode()
    except InvalidTag:
        raise SealError(
            f"the secret of webhook endpoint {endpoint_id} does not open under KEK {kek_id!r} "
            "(altered, or copied from another endpoint)"
        ) from None
