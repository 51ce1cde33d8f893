"""Page tokens: a position in a listing, authenticated and bound to who asked
and for what.

The attacker is any caller who edits a token: to skip to a position it was
never given, to replay another caller's token, or to reuse one token under
other filters or another parent (which reads rows the listing would not
show in that order, or probes ids). A token is the position and an HMAC-SHA256
tag over (caller's key id, binding, position); `binding` is the listing's
parent and filters. Anything else is refused as forged.

The key: the file named by KASSA_PAGE_TOKEN_KEY_FILE (at least 32 bytes;
the same file on every core process behind one address, so that a token
from one is good at the next), else 32 random bytes generated per process,
so tokens do not survive a restart (the caller starts from the first page).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from functools import cache
from pathlib import Path

from core.api.auth import current_key_id

KEY_FILE_ENV = "KASSA_PAGE_TOKEN_KEY_FILE"
MIN_KEY_BYTES = 32
TAG_BYTES = 16
MAX_TOKEN_LEN = 512


@cache
def _key() -> bytes:
    path = os.environ.get(KEY_FILE_ENV)
    if not path:
        return secrets.token_bytes(MIN_KEY_BYTES)
    key = Path(path).read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{KEY_FILE_ENV}: the key must be at least {MIN_KEY_BYTES} bytes")
    return key


def _tag(position: bytes, binding: str) -> bytes:
    caller = current_key_id()
    message = b"\x00".join((caller.encode(), binding.encode(), position))
    return hmac.new(_key(), message, hashlib.sha256).digest()[:TAG_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(position: str, binding: str) -> str:
    raw = position.encode()
    return f"{_b64(raw)}.{_b64(_tag(raw, binding))}"


def open_token(token: str, binding: str) -> str | None:
    """The position `token` names, or None unless this server issued it to
    this caller for this binding."""
    if len(token) > MAX_TOKEN_LEN or token.count(".") != 1:
        return None
    body, tag = token.split(".")
    try:
        raw, given = _unb64(body), _unb64(tag)
        if not hmac.compare_digest(given, _tag(raw, binding)):
            return None
        return raw.decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
