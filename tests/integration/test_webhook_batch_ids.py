"""The dispatcher's ids as PostgreSQL makes them (core/webhooks/dispatch.batch_id):
the same as batch_ids says (tests/unit/test_webhook_batch_ids.py), also at the
extremes of the random base, and within a batch in the order the rows are
inserted, so each batch's entries append at the primary key's right edge
(random ids per row, as before, landed anywhere within the millisecond)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.webhooks.dispatch import batch_id, batch_ids, dispatch_once
from tests.support.ledger import migrated_pool
from tests.support.webhook_rows import endpoints_and_events, row_id

NOW = datetime(2026, 12, 1, 18, 30, 0, 250000, tzinfo=UTC)


async def test_the_sql_makes_the_ids_batch_ids_says(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            for random in (b"\x00" * 10, b"\xff" * 10, bytes(range(10))):
                prefix, base = batch_ids(NOW, random)
                made = await conn.fetch(
                    f"SELECT {batch_id('$1', '$2')} AS id FROM generate_series(1, 3)",  # noqa: S608
                    prefix,
                    base,
                )
                assert [r["id"] for r in made] == [row_id(prefix, base, n) for n in (1, 2, 3)]
                # The last row a batch may have.
                last = await conn.fetchval(
                    f"SELECT {batch_id('$1', '$2')} FROM generate_series(1, 1)",  # noqa: S608
                    prefix,
                    base + (1 << 32) - 2,
                )
                assert last == row_id(prefix, base, (1 << 32) - 1)
                assert last.version == 7 and last.variant == uuid.RFC_4122
    finally:
        await pool.close()


async def test_a_batchs_ids_follow_its_insertion_order(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoints_and_events(conn, 500)
        assert await dispatch_once(pool, NOW, 3600, batch=500) == (500, 1000)
        async with pool.acquire() as conn:
            # A fresh table: its heap order is the insertion order.
            by_heap = [
                r["id"] for r in await conn.fetch("SELECT id FROM webhook_deliveries ORDER BY ctid")
            ]
        assert len(by_heap) == len(set(by_heap)) == 1000
        assert by_heap == sorted(by_heap)
        assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in by_heap)
    finally:
        await pool.close()
