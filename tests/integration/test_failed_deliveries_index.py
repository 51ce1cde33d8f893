"""Migration 0020: failed webhook deliveries have an index of their own, so
that what reads them costs what they are, not the whole delivery history;
since migration 0033 the metrics sampler reads no failed delivery at all
(their count is kept in webhook_delivery_counts: tests/integration/
test_webhook_sample.py). Plans are asserted by node and index names (EXPLAIN's
JSON), never by time; the counts are asserted against the rows written."""

from __future__ import annotations

import json

import asyncpg
import pytest

from core.metrics import SAMPLE
from tests.support.ledger import add_merchant, migrated_pool
from tests.support.plans import plan_nodes

DELIVERIES = 20_000
FAILED_EVERY = 500  # 40 failed among 20,000


async def _history(conn: asyncpg.Connection) -> None:
    """DELIVERIES deliveries of one endpoint, one per event: succeeded, every
    FAILED_EVERY-th failed, the last ten pending."""
    await add_merchant(conn, "m", "M")
    await conn.execute(
        """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
           VALUES ('ep', 'm', 'https://example.test/hook', 'sealed', 0)"""
    )
    await conn.execute(
        """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
           SELECT n, gen_random_uuid(), 'invoice.paid', 'm', 'merchants/m/invoices/i' || n, ''
             FROM generate_series(1, $1) AS n""",
        DELIVERIES,
    )
    await conn.execute(
        """INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence, event_id,
               event_type, resource_name, status, next_attempt_time, give_up_time)
           SELECT gen_random_uuid(), 'ep', 'm', e.sequence, e.id, e.type, e.resource_name,
                  CASE WHEN e.sequence % $2 = 0 THEN 'failed'
                       WHEN e.sequence > $1 - 10 THEN 'pending'
                       ELSE 'succeeded' END,
                  now(), now() + interval '1 day'
             FROM events e""",
        DELIVERIES,
        FAILED_EVERY,
    )
    await conn.execute("ANALYZE webhook_deliveries")


@pytest.mark.asyncio
async def test_the_sampler_reads_no_failed_delivery_nor_the_history(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _history(conn)
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {SAMPLE}")
            nodes = list(plan_nodes(json.loads(raw)[0]["Plan"]))
            scanned = [
                (n["Node Type"], n.get("Index Name", "")) for n in nodes
                if n.get("Relation Name") == "webhook_deliveries" or "webhook_deliveries" in n.get("Index Name", "")
            ]  # fmt: skip
            pending = 10 - sum(
                1 for n in range(DELIVERIES - 9, DELIVERIES + 1) if n % FAILED_EVERY == 0
            )
            # The one read of the table goes through the pending rows' partial
            # index and reads those rows only: none of the history, no failed one.
            assert scanned == [("Index Scan", "webhook_deliveries_order")], scanned
            read = [n for n in nodes if n.get("Index Name") == "webhook_deliveries_order"]
            assert [n["Actual Rows"] for n in read] == [pending], read
            row = await conn.fetchrow(SAMPLE)
            assert row["failed"] == DELIVERIES // FAILED_EVERY
            assert row["pending"] == pending
            # The index holds the failed rows only, whatever the history's size.
            entries = await conn.fetchval(
                "SELECT reltuples FROM pg_class WHERE relname = 'webhook_deliveries_failed'"
            )
            assert entries == DELIVERIES // FAILED_EVERY
    finally:
        await pool.close()
