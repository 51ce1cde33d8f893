"""The dispatcher's INSERT (core/webhooks/dispatch.py): a plain INSERT as a
rule, since the cursor moves with the deliveries it creates; done again with
ON CONFLICT DO NOTHING, whole, only when a delivery of the batch exists
already (a redelivery reaches past the cursor). A plain INSERT makes no
speculative insertion: no confirmation record in the WAL per delivery and no
probe of the unique index before each insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.webhooks.dispatch import dispatch_once
from core.webhooks.endpoints import Endpoints, RedeliverTarget
from core.webhooks.sealing import KEY_BYTES, Keyring
from tests.support.ledger import migrated_pool
from tests.support.webhook_rows import endpoints_and_events

NOW = datetime(2026, 12, 1, 18, 45, tzinfo=UTC)


async def test_a_batch_some_of_whose_deliveries_exist_makes_the_rest(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoints_and_events(conn, 20)
        assert await dispatch_once(pool, NOW, 3600, batch=10) == (10, 20)
        # ep1's deliveries of events 1-20, 11-20 of them past the cursor.
        store = Endpoints(pool, 3600.0, 60, Keyring((("k", bytes(KEY_BYTES)),)))
        target = RedeliverTarget(start_time=NOW - timedelta(days=1))
        assert await store.redeliver("m", "ep1", target, NOW) == 20
        assert await dispatch_once(pool, NOW, 3600, batch=10) == (10, 10)
        assert await dispatch_once(pool, NOW, 3600, batch=10) == (0, 0)
        async with pool.acquire() as conn:
            made = await conn.fetch(
                "SELECT endpoint_id, count(*), count(DISTINCT event_sequence) "
                "FROM webhook_deliveries GROUP BY endpoint_id ORDER BY endpoint_id"
            )
            assert [tuple(r) for r in made] == [("ep1", 20, 20), ("ep2", 20, 20)]
            assert await conn.fetchval("SELECT last_sequence FROM webhook_dispatch_cursor") == 20
    finally:
        await pool.close()


async def test_the_dispatcher_inserts_without_speculation(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE EXTENSION pg_walinspect")
            await endpoints_and_events(conn, 100)
            start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
        assert await dispatch_once(pool, NOW, 3600, batch=100) == (100, 200)
        async with pool.acquire() as conn:
            end = await conn.fetchval("SELECT pg_current_wal_flush_lsn()")
            records = dict(
                await conn.fetch(
                    """SELECT record_type, count(*) FROM pg_get_wal_records_info($1, $2)
                        WHERE resource_manager = 'Heap' GROUP BY record_type""",
                    start,
                    end,
                )
            )
        assert records.get("INSERT", 0) + records.get("INSERT+INIT", 0) == 200, records
        assert "HEAP_CONFIRM" not in records, records  # ON CONFLICT: one per delivery
    finally:
        await pool.close()
