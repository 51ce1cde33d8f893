"""Shared by the tests that drive payments into the ledger against real
PostgreSQL: a migrated database, a merchant, synthetic blocks for the chain
applier; `kassactl ledger check` is in tests/support/kassactl.py."""

from __future__ import annotations

import asyncpg

from core.store.db import create_pool
from core.store.migrate import migrate
from kassa.chain.v1 import adapter_pb2 as chain_pb


async def migrated_pool(dsn: str, max_size: int = 2) -> asyncpg.Pool:
    """A pool on `dsn` after every migration; the caller closes it."""
    await migrate(dsn)
    return await create_pool(dsn, max_size=max_size)


async def add_merchant(conn: asyncpg.Connection, merchant_id: str, display_name: str) -> None:
    await conn.execute(
        "INSERT INTO merchants (id, display_name) VALUES ($1, $2)", merchant_id, display_name
    )


def block(height: int, tag: str, transfers: list[chain_pb.Transfer]) -> chain_pb.Block:
    """Block `height` of a branch named `tag` (hashes 0x{tag}{height}), on a genesis at 0."""
    parent = f"0x{tag}{height - 1}" if height > 1 else "0xgenesis"
    return chain_pb.Block(
        height=height, hash=f"0x{tag}{height}", parent_hash=parent, transfers=transfers
    )
