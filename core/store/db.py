"""Connection pools whose numeric columns are Python ints.

Every numeric column in Kassa holds base units (numeric(78,0)); decoding them
straight to int keeps Decimal and its exponent notation out of money paths.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

# A row as the stores return it, by column name. The edge (core/api) names
# this type to pass rows from an area to its renderer, never asyncpg itself.
Row: TypeAlias = asyncpg.Record


async def _int_numerics(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "numeric", encoder=str, decoder=int, schema="pg_catalog", format="text"
    )


async def create_pool(dsn: str, max_size: int, min_size: int = 2) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_int_numerics)
    assert pool is not None
    return pool
