"""Who is calling: API keys sent as `authorization: Bearer kassa_<id>_<secret>`.

Secrets are 256-bit random values, so a plain SHA-256 is a sound verifier and
the table holds nothing that lets anyone call. Keys are cached briefly to keep
a database round trip off every call; a revocation takes effect within
`cache_ttl_s`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import asyncpg
import grpc

from core.api.errors import ApiError

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
    }
)
_TOKEN = re.compile(r"^kassa_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    key_id: str
    merchant_id: str | None  # None: a platform key, for every merchant
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        owner = self.merchant_id or "-"
        return f"merchants/{owner}/apiKeys/{self.key_id}"


def new_key() -> tuple[str, str, bytes]:
    """(key id, bearer token, secret hash) for a fresh key."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"kassa_{key_id}_{secret}", hashlib.sha256(secret.encode()).digest()


def _denied(
    reason: str, message: str, code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED
) -> ApiError:
    return ApiError(code, reason, message)


class Authenticator:
    def __init__(self, pool: asyncpg.Pool, cache_ttl_s: float = 5.0) -> None:
        self.pool = pool
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, asyncpg.Record | None]] = {}

    async def _key(self, key_id: str) -> asyncpg.Record | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.cache_ttl_s:
            return cached[1]
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, merchant_id, secret_hash, scopes, revoke_time FROM api_keys WHERE id = $1",
                key_id,
            )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_id] = (now, row)
        return row

    async def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        header = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not header:
            raise _denied(
                "CREDENTIALS_MISSING",
                "send an API key as 'authorization: Bearer kassa_…'",
                grpc.StatusCode.UNAUTHENTICATED,
            )
        match = _TOKEN.match(header.removeprefix("Bearer ").strip())
        row = await self._key(match.group(1)) if match else None
        if (
            match is None
            or row is None
            or not hmac.compare_digest(
                bytes(row["secret_hash"]), hashlib.sha256(match.group(2).encode()).digest()
            )
        ):
            raise _denied(
                "CREDENTIALS_INVALID", "the API key is not valid", grpc.StatusCode.UNAUTHENTICATED
            )
        if row["revoke_time"] is not None:
            raise _denied(
                "CREDENTIALS_REVOKED", "the API key was revoked", grpc.StatusCode.UNAUTHENTICATED
            )
        return Principal(row["id"], row["merchant_id"], frozenset(row["scopes"]))

    async def require(
        self, context: grpc.aio.ServicerContext, scope: str, merchant_id: str | None
    ) -> Principal:
        """The caller, if it holds `scope` for `merchant_id` (None: platform-wide)."""
        principal = await self.principal(context)
        authorize(principal, scope, merchant_id)
        return principal


def authorize(principal: Principal, scope: str, merchant_id: str | None) -> None:
    """Refuses unless `principal` holds `scope` for `merchant_id` (None: platform-wide)."""
    assert scope in SCOPES, scope
    if scope not in principal.scopes:
        raise ApiError(
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPE_MISSING",
            f"the API key lacks the scope {scope}",
            metadata={"scope": scope},
        )
    if principal.merchant_id is not None and principal.merchant_id != merchant_id:
        raise ApiError(
            grpc.StatusCode.PERMISSION_DENIED,
            "MERCHANT_FORBIDDEN",
            "the API key belongs to another merchant",
        )
