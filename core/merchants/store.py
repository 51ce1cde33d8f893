"""Merchants and their API keys in PostgreSQL (the logic behind MerchantService)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core import idempotency, names
from core.errors import Refusal, exists, invalid, not_found
from core.merchants.credentials import SCOPES, new_key


async def api_key(pool: asyncpg.Pool, key_id: str) -> asyncpg.Record | None:
    """What authenticating a caller needs of a key (core/api/auth.py caches it)."""
    async with pool.acquire() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT id, merchant_id, secret_hash, scopes, revoke_time FROM api_keys WHERE id = $1",
            key_id,
        )
    return row


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What authenticating a caller needs of a key (its row in api_keys)."""

    id: str
    merchant_id: str | None  # None: a platform key
    secret_hash: bytes
    scopes: frozenset[str]
    revoke_time: datetime | None


class ApiKeys:
    """API keys by id, bound to the pool, for the edge's Authenticator (which holds none)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, key_id: str) -> ApiKey | None:
        row = await api_key(self.pool, key_id)
        if row is None:
            return None
        return ApiKey(
            row["id"],
            row["merchant_id"],
            bytes(row["secret_hash"]),
            frozenset(row["scopes"]),
            row["revoke_time"],
        )


class Merchants:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        merchant_id: str,
        display_name: str,
        request_id: str | None,
        request_hash: bytes = b"",
    ) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            if request_id is not None:
                first = await conn.fetchrow(
                    "SELECT * FROM merchants WHERE request_id = $1", request_id
                )
                if first is not None:
                    # A retry of the same create, or the id reused with another body.
                    idempotency.check(
                        first["request_hash"], request_hash, request_id, f"merchants/{first['id']}"
                    )
                    return first
            existing = await conn.fetchrow("SELECT * FROM merchants WHERE id = $1", merchant_id)
            if existing is not None:
                raise _exists(merchant_id)
            try:
                row = await conn.fetchrow(
                    """INSERT INTO merchants (id, display_name, request_id, request_hash)
                       VALUES ($1, $2, $3, $4) RETURNING *""",
                    merchant_id,
                    display_name,
                    request_id,
                    request_hash if request_id is not None else None,
                )
            except asyncpg.UniqueViolationError:
                if request_id is not None:
                    # A concurrent first use of this request_id: answer as it did.
                    return await self.create(merchant_id, display_name, request_id, request_hash)
                raise _exists(merchant_id) from None
        assert row is not None
        return row

    async def get(self, merchant_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM merchants WHERE id = $1", merchant_id)
        if row is None:
            raise not_found("merchant", names.merchant(merchant_id))
        return row

    async def page(self, after_id: str, limit: int) -> list[asyncpg.Record]:
        """Up to `limit` merchants with an id after `after_id`, by id."""
        assert limit > 0, limit
        async with self.pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT * FROM merchants WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
            )
        return rows

    async def create_key(
        self, merchant_id: str | None, scopes: list[str], description: str
    ) -> tuple[asyncpg.Record, str]:
        unknown = sorted(set(scopes) - SCOPES)
        if unknown or not scopes:
            raise invalid(
                [("scopes", f"choose from {', '.join(sorted(SCOPES))}; unknown: {unknown}")]
            )
        if merchant_id is not None and "merchants:admin" in scopes:
            raise invalid([("scopes", "merchants:admin is for platform keys only")])
        key_id, token, secret_hash = new_key()
        async with self.pool.acquire() as conn:
            if merchant_id is not None:
                await self.get(merchant_id)
            row = await conn.fetchrow(
                """INSERT INTO api_keys (id, merchant_id, secret_hash, scopes, description)
                   VALUES ($1, $2, $3, $4, $5) RETURNING *""",
                key_id,
                merchant_id,
                secret_hash,
                sorted(set(scopes)),
                description,
            )
        assert row is not None
        return row, token

    async def list_keys(self, merchant_id: str) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    "SELECT * FROM api_keys WHERE merchant_id = $1 ORDER BY create_time, id",
                    merchant_id,
                )
            )

    async def revoke_key(self, merchant_id: str, key_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """UPDATE api_keys SET revoke_time = coalesce(revoke_time, now())
                    WHERE merchant_id = $1 AND id = $2 RETURNING *""",
                merchant_id,
                key_id,
            )
        if row is None:
            raise not_found("api_key", names.api_key(merchant_id, key_id))
        return row


def _exists(merchant_id: str) -> Refusal:
    return exists("MERCHANT_EXISTS", f"{names.merchant(merchant_id)} already exists")
