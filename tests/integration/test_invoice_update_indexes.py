"""Migration 0021: an invoice update takes fewer index entries, and what the
dropped entries enforced still holds.

A block's invoice UPDATE is never HOT (it changes `state`), so every index
whose predicate a row meets takes an entry per update. invoices_watched was
read by nothing and is gone; the (merchant, request_id) uniqueness is a
partial index without the NULL request_ids it never enforced anything on.
Plans are asserted by node and index names (EXPLAIN's JSON), never by time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.support.ledger import add_merchant, migrated_pool
from tests.support.plans import plan_nodes

NOW = datetime(2030, 6, 1, tzinfo=UTC)


async def _invoice(conn: asyncpg.Connection, n: int, request_id: str | None) -> None:
    await conn.execute(
        """INSERT INTO invoices (id, merchant_id, merchant_order_id, request_id, chain, asset,
               asset_decimals, amount_due, deposit_address, derivation_index,
               confirmations_required, expire_time, monitoring_end_time, state)
           VALUES ($1, 'm', $1, $2, 'eip155:1', 'eip155:1/slip44:60', 18, 100, $3, $4, 1, $5,
                   $6, 'awaiting_payment')""",
        f"inv-{n}",
        request_id,
        "0x" + f"{n}".rjust(40, "0"),
        n,
        NOW + timedelta(hours=1),
        NOW + timedelta(days=1),
    )


@pytest.mark.asyncio
async def test_request_ids_stay_unique_per_merchant_and_the_replay_finds_them_by_index(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "m", "M")
            indexes = {
                r["indexname"]: r["indexdef"]
                for r in await conn.fetch(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'invoices'"
                )
            }
            assert "invoices_watched" not in indexes
            assert "WHERE (request_id IS NOT NULL)" in indexes["invoices_request_id"]
            # Invoices without a request_id never conflict with each other.
            await _invoice(conn, 1, None)
            await _invoice(conn, 2, None)
            await _invoice(conn, 3, "req-1")
            # The same request_id for the same merchant is refused, as before.
            with pytest.raises(asyncpg.UniqueViolationError) as refused:
                await _invoice(conn, 4, "req-1")
            assert refused.value.constraint_name == "invoices_request_id"
            # The idempotent create's replay lookup reads that index.
            await conn.execute("SET enable_seqscan = off")
            raw = await conn.fetchval(
                "EXPLAIN (FORMAT JSON) SELECT * FROM invoices WHERE merchant_id = $1 "
                "AND request_id = $2",
                "m",
                "req-1",
            )
            used = {n.get("Index Name") for n in plan_nodes(json.loads(raw)[0]["Plan"])}
            assert "invoices_request_id" in used, raw
            found = await conn.fetch(
                "SELECT id FROM invoices WHERE merchant_id = $1 AND request_id = $2", "m", "req-1"
            )
            assert [r["id"] for r in found] == ["inv-3"]
    finally:
        await pool.close()
