"""Migration 0019: the expiry clock's query has an index of its own.

The old partial index named awaiting_payment only, which the clock's query
(three states) cannot use: every pass scanned all invoices. Plans are asserted
by node and index names (EXPLAIN's JSON), never by time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.invoices import clock
from tests.support.ledger import add_merchant, migrated_pool
from tests.support.plans import plan_nodes

NOW = datetime(2030, 6, 1, tzinfo=UTC)


async def _invoices(conn: asyncpg.Connection, count: int) -> None:
    """count awaiting invoices of merchant m, none due yet, in one statement."""
    await conn.execute(
        """INSERT INTO invoices (id, merchant_id, merchant_order_id, chain, asset, asset_decimals,
               amount_due, deposit_address, derivation_index, confirmations_required, expire_time,
               monitoring_end_time, state, flags, create_time, update_time)
           SELECT 'inv-' || lpad(n::text, 8, '0'), 'm', 'o' || n, 'eip155:1',
                  'eip155:1/slip44:60', 18, 100, '0x' || lpad(n::text, 40, '0'),
                  nextval('deposit_index_seq'), 1, $2::timestamptz + n * interval '1 second',
                  $2::timestamptz + interval '1 day', 'awaiting_payment', '{}',
                  $2::timestamptz - n * interval '1 second', $2::timestamptz
             FROM generate_series(1, $1) AS n""",
        count,
        NOW,
    )


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> list[tuple[str, str]]:
    """(node type, index or relation) of every node of the statement's plan."""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    top = json.loads(raw)[0]["Plan"]
    return [
        (n["Node Type"], n.get("Index Name") or n.get("Relation Name") or "")
        for n in plan_nodes(top)
    ]


@pytest.mark.asyncio
async def test_the_expiry_clock_reads_only_what_is_due_through_its_index(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "m", "M")
            await _invoices(conn, 20_000)
            past = NOW - timedelta(hours=1)
            # Past their deadline: 200 in each state the clock moves, and 200
            # paid ones it must never read.
            for suffix, state in (("11", "awaiting_payment"), ("22", "detected"),
                                  ("33", "confirming"), ("44", "paid")):  # fmt: skip
                await conn.execute(
                    "UPDATE invoices SET expire_time = $1, state = $2 WHERE id LIKE $3",
                    past,
                    state,
                    f"%{suffix}",
                )
            await conn.execute("ANALYZE invoices")
            indexes = {
                r["indexname"]
                for r in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'invoices'"
                )
            }
            due_plan = await _plan(conn, clock.DUE, NOW, "", clock.BATCH)
            due = [r["id"] for r in await conn.fetch(clock.DUE, NOW, "", 1000)]
    finally:
        await pool.close()
    assert "invoices_expiring" in indexes and "invoices_awaiting_expiry" not in indexes
    assert any(
        node in {"Index Scan", "Bitmap Index Scan"} and name == "invoices_expiring"
        for node, name in due_plan
    ), due_plan
    assert ("Seq Scan", "invoices") not in due_plan, due_plan
    assert len(due) == 600
    assert not any(i.endswith("44") for i in due)
    assert due == sorted(due)


@pytest.mark.asyncio
async def test_the_clock_expires_every_due_invoice_across_batches(fresh_dsn: str) -> None:
    """More due invoices than one batch: every one is moved, the others are not."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "m", "M")
            await _invoices(conn, 3_000)
            await conn.execute(
                "UPDATE invoices SET expire_time = $1 WHERE id <= 'inv-00001200'",
                NOW - timedelta(minutes=5),
            )
        moved = await clock.expire_due(pool, NOW)
        async with pool.acquire() as conn:
            states = dict(await conn.fetch("SELECT state, count(*) FROM invoices GROUP BY state"))
    finally:
        await pool.close()
    assert moved == 1_200
    assert states == {"expired": 1_200, "awaiting_payment": 1_800}
