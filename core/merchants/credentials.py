"""The credential vocabulary: API-key scopes and the bearer token's shape.

A key is `kassa_<16 hex id>_<43 url-safe secret>`; the database keeps only
SHA-256 of the secret (256 random bits make a plain hash a sound verifier).
Used by the merchants store (issuing keys), core/api/auth.py (checking them)
and kassactl (bootstrap). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
import secrets

SCOPES = frozenset(
    {
        "invoices:read",
        "invoices:write",
        "invoices:mark",
        "events:read",
        "ledger:read",
        "ledger:write",
        "merchants:admin",
        "webhooks:read",
        "webhooks:write",
        "payouts:read",
        "payouts:write",
        "payouts:approve",
        "sweeps:read",
        "sweeps:write",
        "reconcile:read",
        "reconcile:write",
        "exceptions:read",
        "exceptions:write",
        "support:read",
        "support:write",
        "support:accept",
        "support:refund",
        "support:approve",
    }
)
_TOKEN = re.compile(r"kassa_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_key() -> tuple[str, str, bytes]:
    """(key id, bearer token, secret hash) for a fresh key."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"kassa_{key_id}_{secret}", secret_hash(secret)


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None
