"""Migration 0028: the claim's columns (CLAIMED_STATISTICS) have a statistics
target of 10, so the dispatcher's ANALYZE after a burst samples 3,000 rows,
not 30,000 (at 300,000 deliveries: 80-97 -> 10-13 ms of PostgreSQL's CPU per
ANALYZE); the planner still learns of the burst."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.webhooks.dispatch import CLAIMED_STATISTICS, dispatch_once, refresh_statistics
from tests.support.ledger import add_merchant, migrated_pool

NOW = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


async def test_the_claims_columns_are_analyzed_on_a_small_sample(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            targets = {
                r["attname"]: r["attstattarget"]
                for r in await conn.fetch(
                    """SELECT attname, attstattarget FROM pg_attribute
                        WHERE attrelid = 'webhook_deliveries'::regclass AND attnum > 0
                          AND NOT attisdropped"""
                )
            }
            assert {c: targets[c] for c in CLAIMED_STATISTICS} == dict.fromkeys(
                CLAIMED_STATISTICS, 10
            )
            # Every other column keeps the default (NULL since PostgreSQL 17, -1 before).
            assert all(
                t in (None, -1) for c, t in targets.items() if c not in CLAIMED_STATISTICS
            ), targets
            await add_merchant(conn, "m", "M")
            await conn.execute(
                """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
                   VALUES ('ep', 'm', 'https://example.test/hook', 'sealed', 0)"""
            )
            # 2,000 deliveries (as the dispatcher stores them), 500 still pending.
            await conn.copy_records_to_table(
                "events",
                records=[
                    (n, uuid.uuid4(), "invoice.paid", "m", f"r{n}", b"") for n in range(1, 2001)
                ],
                columns=("sequence", "id", "type", "merchant_id", "resource_name", "payload"),
            )
        assert await dispatch_once(pool, NOW, 3600, batch=2000) == (2000, 2000)
        async with pool.acquire() as conn:
            await conn.execute(
                """UPDATE webhook_deliveries
                      SET status = 'succeeded',
                          next_attempt_time = next_attempt_time - (event_sequence || ' s')::interval
                    WHERE event_sequence <= 1500"""
            )
        await refresh_statistics(pool)
        async with pool.acquire() as conn:
            stats = await conn.fetchrow(
                """SELECT array_length(histogram_bounds::text::text[], 1) AS buckets
                     FROM pg_stats WHERE tablename = 'webhook_deliveries'
                      AND attname = 'next_attempt_time'"""
            )
            # 10 buckets: 11 bounds at most (100 at the default target: 101).
            assert stats is not None and stats["buckets"] <= 11, stats
            pending = await conn.fetchval(
                "SELECT reltuples FROM pg_class WHERE relname = 'webhook_deliveries_due'"
            )
            assert pending == 500  # the sample is the whole (small) table
    finally:
        await pool.close()
