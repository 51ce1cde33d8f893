"""Migration 0032: an UPDATE of a delivery that changes neither its endpoint nor
its event takes no row lock. The check of a changed reference (0030) was a
BEFORE ROW UPDATE trigger, and PostgreSQL locks the old row for such a trigger
before it reads the trigger's column list or WHEN clause: the record's update
of every delivery wrote a lock's WAL record first. Asserted on the worker's own
statements, by the WAL they write (pg_walinspect); the check itself is still
made (tests/integration/test_webhook_delivery_references.py). And the table's
fillfactor leaves room on a page for the worker's claims to stay HOT."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from core.webhooks.dispatch import dispatch_once
from core.webhooks.worker import CLAIM_SQL, record
from tests.support.ledger import add_merchant, migrated_pool
from tests.support.webhook_rows import LEASE_S, T0, attempted, claim, deliveries

RESOURCES = [f"merchants/m/invoices/{n}" for n in range(5)]


async def _row_locks(conn: asyncpg.Connection, start: str, end: str) -> int:
    """Heap LOCK records of webhook_deliveries between two LSNs."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM pg_get_wal_records_info($1, $2) w
                WHERE w.resource_manager = 'Heap' AND w.record_type = 'LOCK'
                  AND w.block_ref LIKE '%/' || pg_relation_filenode('webhook_deliveries') || ' %'""",
            start,
            end,
        )
    )


@pytest.mark.asyncio
async def test_a_claim_locks_its_rows_once_and_a_record_locks_none(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE EXTENSION pg_walinspect")
            await deliveries(conn, RESOURCES)
            start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
            rows = await claim(conn, T0)
            claimed = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
            assert len(rows) == len(RESOURCES)
            await record(conn, [attempted(r, T0, 200) for r in rows])
            end = await conn.fetchval("SELECT pg_current_wal_flush_lsn()")
            # The claim's FOR UPDATE, one a row; its UPDATE of the locked row adds none.
            assert await _row_locks(conn, start, claimed) == len(RESOURCES)
            # 0030's BEFORE trigger: one a recorded row.
            assert await _row_locks(conn, claimed, end) == 0
            statuses = await conn.fetch("SELECT status, last_attempt FROM webhook_deliveries")
            assert [tuple(s) for s in statuses] == [("succeeded", 1)] * len(RESOURCES)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_changed_reference_is_still_checked_for_every_row(fresh_dsn: str) -> None:
    """Checked after each row's update, before the statement ends: one bad row
    among good ones refuses the statement, which changes nothing."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await deliveries(conn, RESOURCES)
            before = await conn.fetch("SELECT * FROM webhook_deliveries ORDER BY id")
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    """UPDATE webhook_deliveries
                          SET event_sequence = CASE WHEN event_sequence = 3 THEN 99
                                                    ELSE event_sequence END,
                              status = 'cancelled'"""
                )
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    """UPDATE webhook_deliveries
                          SET endpoint_id = CASE WHEN event_sequence = 5 THEN 'nowhere'
                                                 ELSE endpoint_id END"""
                )
            after = await conn.fetch("SELECT * FROM webhook_deliveries ORDER BY id")
            assert [tuple(r) for r in after] == [tuple(r) for r in before]
            # A change to an event that exists is made.
            await conn.execute(
                """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
                   VALUES (6, gen_random_uuid(), 'invoice.paid', 'm', 'merchants/m/invoices/5', '')"""
            )
            await conn.execute(
                "UPDATE webhook_deliveries SET event_sequence = 6 WHERE event_sequence = 5"
            )
    finally:
        await pool.close()


async def _bench_like_deliveries(pool: asyncpg.Pool, events: int) -> None:
    """`events` deliveries as the dispatcher stores them, of the events bench's
    sizes (a 16-character endpoint id, 39-character resource names)."""
    async with pool.acquire() as conn:
        await add_merchant(conn, "bench", "B")
        await conn.execute(
            """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
               VALUES ('7e1b834e89e1d6fa', 'bench', 'https://example.test/hook', 's', 0)"""
        )
        await conn.execute(
            """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
               SELECT n, gen_random_uuid(), 'invoice.created', 'bench',
                      'merchants/bench/invoices/inv' || lpad(n::text, 12, '0'), ''
                 FROM generate_series(1, $1) n""",
            events,
        )
        await conn.execute("UPDATE event_sequence SET last = $1 WHERE id = 1", events)
    assert await dispatch_once(pool, T0, 86400, events) == (events, events)


@pytest.mark.asyncio
async def test_claims_of_a_pages_deliveries_are_hot(fresh_dsn: str) -> None:
    """fillfactor 50: a page the dispatcher filled has room for a claim's new
    version of each of half of its rows, so that the worker's claims, in
    batches of 16, stay HOT (at 70, a quarter of them were not: a new entry in
    each of four indexes)."""
    pool = await migrated_pool(fresh_dsn)
    try:
        await _bench_like_deliveries(pool, 320)
        async with pool.acquire() as conn:
            await conn.execute("CREATE EXTENSION pg_walinspect")
            start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
            claimed = 0
            while claimed < 320:
                rows = await conn.fetch(CLAIM_SQL, T0, 16, T0 - timedelta(seconds=LEASE_S))
                assert rows
                claimed += len(rows)
            end = await conn.fetchval("SELECT pg_current_wal_flush_lsn()")
            updates = dict(
                await conn.fetch(
                    """SELECT w.record_type, count(*) FROM pg_get_wal_records_info($1, $2) w
                        WHERE w.resource_manager = 'Heap'
                          AND w.record_type IN ('UPDATE', 'HOT_UPDATE')
                          AND w.block_ref LIKE '%/' || pg_relation_filenode('webhook_deliveries')
                                               || ' %'
                        GROUP BY 1""",
                    start,
                    end,
                )
            )
        assert updates == {"HOT_UPDATE": 320}, updates
    finally:
        await pool.close()
