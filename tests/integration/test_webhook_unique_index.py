"""Migration 0027: one unique index, (merchant_id, event_sequence, endpoint_id),
is the dispatcher's and the redelivery's ON CONFLICT target and the listing's
index; the unique (endpoint_id, event_sequence) and the listing's own index
are gone (one entry fewer per insert and per non-HOT update of a delivery:
~160 bytes of WAL per delivery). Deliveries are still made once per endpoint
and event, also on a database upgraded with deliveries in it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from core.store.migrate import load_migrations
from core.webhooks.dispatch import dispatch_once
from core.webhooks.endpoints import DeliveryFilter, Endpoints, RedeliverTarget
from core.webhooks.sealing import KEY_BYTES, Keyring
from tests.support.ledger import add_merchant, migrated_pool

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


async def _indexes(conn: asyncpg.Connection) -> dict[str, str]:
    return {
        r["indexname"]: r["indexdef"]
        for r in await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'webhook_deliveries'"
        )
    }


async def _endpoints_and_events(conn: asyncpg.Connection, first: int, last: int) -> None:
    await add_merchant(conn, "m", "M")
    for endpoint in ("ep1", "ep2"):
        await conn.execute(
            """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
               VALUES ($1, 'm', 'https://example.test/hook', 'sealed', 0)""",
            endpoint,
        )
    await _events(conn, first, last)


async def _events(conn: asyncpg.Connection, first: int, last: int) -> None:
    """Events first..last of merchant m, one invoice each."""
    rows = [
        (n, uuid.uuid4(), "invoice.paid", "m", f"merchants/m/invoices/u{n}", b"")
        for n in range(first, last + 1)
    ]
    await conn.copy_records_to_table(
        "events",
        records=rows,
        columns=("sequence", "id", "type", "merchant_id", "resource_name", "payload"),
    )


async def _once_per_endpoint_and_event(pool: asyncpg.Pool, events: int) -> None:
    """Each (endpoint, event) has one delivery, after dispatching the same
    events again and redelivering them (which queues the existing rows)."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE webhook_dispatch_cursor SET last_sequence = 0")
    assert await dispatch_once(pool, NOW, 3600, batch=events) == (events, 0)
    store = Endpoints(pool, 3600.0, 60, Keyring((("k", bytes(KEY_BYTES)),)))
    assert await store.redeliver("m", "ep1", RedeliverTarget(), NOW) == events
    async with pool.acquire() as conn:
        counts = await conn.fetch(
            """SELECT endpoint_id, count(*) AS n, count(DISTINCT event_sequence) AS events,
                      count(*) FILTER (WHERE status = 'pending') AS pending
                 FROM webhook_deliveries GROUP BY endpoint_id ORDER BY endpoint_id"""
        )
    assert [tuple(r)[:3] for r in counts] == [("ep1", events, events), ("ep2", events, events)]
    assert counts[0]["pending"] == events


async def test_one_unique_index_serves_the_conflicts_and_the_listing(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            indexes = await _indexes(conn)
            assert (
                "UNIQUE INDEX webhook_deliveries_by_merchant"
                in indexes["webhook_deliveries_by_merchant"]
            ), indexes
            assert (
                "(merchant_id, event_sequence, endpoint_id)"
                in (indexes["webhook_deliveries_by_merchant"])
            )
            assert "webhook_deliveries_endpoint_id_event_sequence_key" not in indexes
            # The primary key, the listing's, the claim's two, the failed count's.
            assert len(indexes) == 5, indexes
            await _endpoints_and_events(conn, 1, 30)
        assert await dispatch_once(pool, NOW, 3600, batch=30) == (30, 60)
        await _once_per_endpoint_and_event(pool, 30)
        # The same (endpoint, event) twice is refused as before.
        async with pool.acquire() as conn:
            try:
                await conn.execute(
                    """INSERT INTO webhook_deliveries
                         (id, endpoint_id, merchant_id, event_sequence, event_id, event_type,
                          resource_name, status, next_attempt_time, give_up_time)
                       SELECT gen_random_uuid(), endpoint_id, merchant_id, event_sequence,
                              event_id, event_type, resource_name, 'pending', now(), now()
                         FROM webhook_deliveries WHERE event_sequence = 3"""
                )
            except asyncpg.UniqueViolationError:
                pass
            else:
                raise AssertionError("a second delivery of one endpoint and event was stored")
            await conn.execute("ANALYZE webhook_deliveries")
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    """EXPLAIN SELECT d.* FROM webhook_deliveries d WHERE d.merchant_id = 'm'
                        ORDER BY d.event_sequence DESC, d.id DESC LIMIT 5"""
                )
            )
        assert "Index Scan Backward using webhook_deliveries_by_merchant" in plan, plan
        store = Endpoints(pool, 3600.0, 60, Keyring((("k", bytes(KEY_BYTES)),)))
        rows, _ = await store.deliveries("m", DeliveryFilter(None, None, None), 4, None)
        keys = [(r["event_sequence"], r["id"]) for r in rows]
        assert keys == sorted(keys, reverse=True)
        assert [k[0] for k in keys] == [30, 30, 29, 29, 28]
    finally:
        await pool.close()


async def test_an_upgraded_database_keeps_its_deliveries_unique(fresh_dsn: str) -> None:
    """Migration 0027 on a database with deliveries: the index is built from
    them, and dispatching or redelivering their events again adds none."""
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await conn.execute(
            """CREATE TABLE schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL,
                   checksum text NOT NULL, applied_time timestamptz NOT NULL DEFAULT now())"""
        )
        older = [m for m in load_migrations() if m.version < 27]
        await conn.execute("\n".join(m.sql for m in older))
        await conn.executemany(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            [(m.version, m.name, m.checksum) for m in older],
        )
        before = await _indexes(conn)
        assert "webhook_deliveries_endpoint_id_event_sequence_key" in before, before
        await _endpoints_and_events(conn, 1, 40)
        # Deliveries of 0026's schema: every event to both endpoints.
        await conn.execute(
            """INSERT INTO webhook_deliveries
                 (id, endpoint_id, merchant_id, event_sequence, event_id, event_type,
                  resource_name, status, next_attempt_time, give_up_time)
               SELECT gen_random_uuid(), e.id, ev.merchant_id, ev.sequence, ev.id, ev.type,
                      ev.resource_name, 'succeeded', now(), now()
                 FROM events ev JOIN webhook_endpoints e ON e.merchant_id = ev.merchant_id"""
        )
    finally:
        await conn.close()
    pool = await migrated_pool(fresh_dsn)  # 0026 -> 0027
    try:
        async with pool.acquire() as conn:
            after = await _indexes(conn)
            assert "webhook_deliveries_endpoint_id_event_sequence_key" not in after, after
            assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 80
        await _once_per_endpoint_and_event(pool, 40)
    finally:
        await pool.close()
