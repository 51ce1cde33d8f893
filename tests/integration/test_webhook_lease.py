"""Migration 0023: a claim leases a delivery in lease_time, a column no index
covers, so the claim is a HOT update (no new index entry), and the lease
still does what the moved next_attempt_time did: a leased delivery is not
claimed again until its lease runs out (then it is, once: at least once),
the record, a redelivery or a cancellation ends it, and it holds its
resource's next event back. Asserted on the worker's own statements
against a migrated database."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest

from core.webhooks import retry
from core.webhooks.endpoints import DeliveryFilter, Endpoints
from core.webhooks.sealing import KEY_BYTES, Keyring
from core.webhooks.settings import WebhookSettings
from core.webhooks.worker import (
    CLAIM_SQL,
    Attempted,
    DeliveryWorker,
    _Claimer,
    _Recorder,
    record,
)
from tests.support.ledger import migrated_pool
from tests.support.webhook_rows import LEASE_S, T0
from tests.support.webhook_rows import attempted as _attempted
from tests.support.webhook_rows import claim as _claim
from tests.support.webhook_rows import deliveries as _deliveries


async def _two_claimed(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Two deliveries of two resources, both claimed at T0."""
    async with pool.acquire() as conn:
        await _deliveries(conn, ["merchants/m/invoices/a", "merchants/m/invoices/b"])
        rows = await _claim(conn, T0)
    assert len(rows) == 2
    return rows


@pytest.mark.asyncio
async def test_a_claim_is_a_hot_update_and_its_lease_holds_until_it_runs_out(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            async with conn.transaction():
                claimed = await _claim(conn, T0)
                # This transaction's own counts: the claim wrote no index entry.
                hot = await conn.fetchrow(
                    """SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables
                        WHERE relname = 'webhook_deliveries'"""
                )
            assert [r["attempt_count"] for r in claimed] == [1]
            assert (hot["n_tup_upd"], hot["n_tup_hot_upd"]) == (1, 1)
            # Still due by its time, but leased: not claimed again within the lease.
            assert await _claim(conn, T0 + timedelta(seconds=1)) == []
            assert await _claim(conn, T0 + timedelta(seconds=LEASE_S - 1)) == []
            # The lease ran out (the sender died): claimed again, as the next attempt.
            again = await _claim(conn, T0 + timedelta(seconds=LEASE_S))
            assert [r["attempt_count"] for r in again] == [2]
            assert await _claim(conn, T0 + timedelta(seconds=LEASE_S + 1)) == []
            # The first attempt's late record is fenced off (attempt_count moved on).
            await record(conn, [_attempted(claimed[0], T0 + timedelta(seconds=1), 200)])
            assert await conn.fetchval("SELECT status FROM webhook_deliveries") == "pending"
            assert await conn.fetchval("SELECT count(*) FROM webhook_attempts") == 1
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_recorded_failure_ends_the_lease_and_the_retry_is_due_at_its_backoff(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            [row] = await _claim(conn, T0)
            started = T0 + timedelta(milliseconds=1)
            failed = _attempted(row, started, 503)
            assert failed.decision.status is retry.Status.PENDING
            due = failed.decision.next_attempt_time
            assert due is not None and due - failed.now < timedelta(seconds=LEASE_S)
            await record(conn, [failed])
            # Not before its backoff; at it, though the claim's lease would still hold.
            assert await _claim(conn, due - timedelta(milliseconds=1)) == []
            [retried] = await _claim(conn, due)
            assert retried["attempt_count"] == 2
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_an_error_with_a_nul_does_not_fail_the_batchs_record(fresh_dsn: str) -> None:
    """What a receiver says reaches the error column (a reason phrase): a NUL,
    which PostgreSQL's text refuses, is dropped, and the other attempts of the
    same statement are recorded with it."""
    pool = await migrated_pool(fresh_dsn)
    try:
        rows = await _two_claimed(pool)
        async with pool.acquire() as conn:
            started = T0 + timedelta(milliseconds=1)
            ok = _attempted(rows[0], started, 200)
            bad = _attempted(rows[1], started, 500)
            bad = Attempted(
                bad.claimed,
                bad.started,
                bad.duration_ms,
                retry.Outcome(500, "HTTP 500 Bad\x00Thing"),
                bad.decision,
                bad.now,
            )
            await record(conn, [ok, bad])
            recorded = {
                r["delivery_id"]: r["error"]
                for r in await conn.fetch("SELECT delivery_id, error FROM webhook_attempts")
            }
            assert recorded == {
                ok.claimed.delivery_id: "",
                bad.claimed.delivery_id: "HTTP 500 BadThing",
            }
            statuses = await conn.fetch(
                "SELECT status FROM webhook_deliveries ORDER BY event_sequence"
            )
            assert [r["status"] for r in statuses] == ["succeeded", "pending"]
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_claim_answered_after_the_worker_stopped_starts_no_attempt(
    fresh_dsn: str,
) -> None:
    """run() ends by closing the claimer before it cancels what is in flight:
    a claim's rows that arrive after that start nothing (no task left sending
    on sessions already closed); their leases run out and they are sent again."""
    pool = await migrated_pool(fresh_dsn)
    try:
        rows = await _two_claimed(pool)
        worker = DeliveryWorker(
            pool,
            None,
            WebhookSettings(poll_interval_s=0.05, allow_private_targets=True),
            lambda: T0,
            Keyring((("k", bytes(KEY_BYTES)),)),
        )
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(0.1)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        worker._claiming += 8  # a claim in flight when run() ended, answered late:
        worker._claimed(rows, 8, T0)
        assert not worker._in_flight
        async with pool.acquire() as conn:
            pending = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
            )
        assert pending == 2
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_redelivery_ends_the_lease(fresh_dsn: str) -> None:
    """A redelivery asked for while an attempt is in flight is sent now, as
    when it moved next_attempt_time over the lease (the attempt's own record
    is then fenced off by update_time)."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            [row] = await _claim(conn, T0)
            later = T0 + timedelta(seconds=2)
            await conn.execute(
                """UPDATE webhook_deliveries
                      SET status = 'pending', next_attempt_time = $1, update_time = $1""",
                later,
            )
            [again] = await _claim(conn, later)
            assert again["attempt_count"] == 2
            # The in-flight attempt's record changes nothing (a redelivery came after it began).
            await record(conn, [_attempted(row, T0 + timedelta(seconds=1), 200)])
            assert await conn.fetchval("SELECT status FROM webhook_deliveries") == "pending"
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_leased_delivery_holds_its_resources_next_event_back(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(
                conn,
                ["merchants/m/invoices/a", "merchants/m/invoices/a", "merchants/m/invoices/b"],
            )
            first = await _claim(conn, T0)
            # a's first event and b's; a's second waits for a's first.
            assert sorted(r["sequence"] for r in first) == [1, 3]
            assert await _claim(conn, T0 + timedelta(seconds=1)) == []
            by_sequence = {r["sequence"]: r for r in first}
            # Once a's first is recorded, a's second is claimed.
            await record(conn, [_attempted(by_sequence[1], T0 + timedelta(milliseconds=1), 200)])
            [second] = await _claim(conn, T0 + timedelta(seconds=2))
            assert second["sequence"] == 2
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_the_listing_by_event_walks_the_merchant_index(fresh_dsn: str) -> None:
    """webhook_deliveries_by_event is gone: the listing filtered by event finds
    that event's deliveries, and only them, through the merchant's index."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, [f"merchants/m/invoices/{i}" for i in range(50)])
            # A history large enough that a scan of the table costs more than an index.
            await conn.execute(
                """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
                   SELECT n, gen_random_uuid(), 'invoice.paid', 'm', 'merchants/m/invoices/h' || n, ''
                     FROM generate_series(51, 5050) AS n"""
            )
            await conn.execute(
                """INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence,
                       event_id, event_type, resource_name, status, next_attempt_time,
                       give_up_time)
                   SELECT gen_random_uuid(), 'ep', 'm', e.sequence, e.id, e.type,
                          e.resource_name, 'succeeded', now(), now()
                     FROM events e WHERE e.sequence > 50"""
            )
            await conn.execute(
                """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
                   VALUES ('ep2', 'm', 'https://example.test/other', 'plain-secret', 0)"""
            )
            await conn.execute(
                """INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence,
                       event_id, event_type, resource_name, status, next_attempt_time,
                       give_up_time)
                   SELECT gen_random_uuid(), 'ep2', 'm', e.sequence, e.id, e.type,
                          e.resource_name, 'succeeded', now(), now()
                     FROM events e WHERE e.sequence = 7"""
            )
            await conn.execute("ANALYZE webhook_deliveries")
            event_id = await conn.fetchval("SELECT id FROM events WHERE sequence = 7")
        store = Endpoints(pool, 3600.0, 60, Keyring((("k", bytes(KEY_BYTES)),)))
        rows, attempts = await store.deliveries("m", DeliveryFilter(None, event_id, None), 10, None)
        assert sorted((r["endpoint_id"], r["event_sequence"]) for r in rows) == [
            ("ep", 7),
            ("ep2", 7),
        ]
        assert all(r["event_id"] == event_id for r in rows)
        assert set(attempts) == {r["id"] for r in rows}
        # The event's deliveries of one endpoint, and none of another event.
        rows, _ = await store.deliveries("m", DeliveryFilter("ep2", event_id, None), 10, None)
        assert [(r["endpoint_id"], r["event_sequence"]) for r in rows] == [("ep2", 7)]
        other = await pool.fetchval("SELECT id FROM events WHERE sequence = 8")
        rows, _ = await store.deliveries("m", DeliveryFilter("ep2", other, None), 10, None)
        assert rows == []
        missing = uuid.uuid4()
        rows, _ = await store.deliveries("m", DeliveryFilter(None, missing, None), 10, None)
        assert rows == []
        async with pool.acquire() as conn:
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    """EXPLAIN SELECT d.* FROM webhook_deliveries d
                        WHERE d.merchant_id = 'm'
                          AND d.event_sequence = (SELECT sequence FROM events WHERE id = $1)
                          AND d.event_id = $1""",
                    event_id,
                )
            )
        assert "webhook_deliveries_by_merchant" in plan, plan
        assert "Seq Scan on webhook_deliveries" not in plan, plan
    finally:
        await pool.close()


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    t0 = time.monotonic()
    while not await check():
        assert time.monotonic() - t0 < timeout_s, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_claim_does_not_wait_for_a_record_in_flight(fresh_dsn: str) -> None:
    """Records and claims have a connection each (core/webhooks/worker.py): a
    slot freed waits for a claim's round trip, never behind a record's
    statement (with one statement for both, it waited for the one in flight)."""
    pool = await migrated_pool(fresh_dsn, max_size=4)
    claims: list[object] = []
    claimer = _Claimer(
        pool, lambda: T0 + timedelta(seconds=1), LEASE_S, lambda rows, *_: claims.append(rows)
    )
    recorder = _Recorder(pool)
    try:
        async with pool.acquire() as conn, pool.acquire() as blocker:
            await _deliveries(conn, ["merchants/m/invoices/a", "merchants/m/invoices/b"])
            [first] = await conn.fetch(CLAIM_SQL, T0, 1, T0 - timedelta(seconds=LEASE_S))
            async with blocker.transaction():
                # The record of a's attempt waits for this row lock.
                await blocker.execute(
                    "SELECT 1 FROM webhook_deliveries WHERE id = $1 FOR UPDATE",
                    first["delivery_id"],
                )
                recorder.add(_attempted(first, T0 + timedelta(milliseconds=1), 200))

                async def record_waits() -> bool:
                    return bool(
                        await conn.fetchval(
                            """SELECT count(*) = 1 FROM pg_stat_activity
                                WHERE datname = current_database() AND wait_event_type = 'Lock'"""
                        )
                    )

                await _until(record_waits)
                claimer.claim(8)

                async def claimed() -> bool:
                    return bool(claims)

                await _until(claimed, timeout_s=5.0)
                [rows] = claims
                assert isinstance(rows, list)
                assert [r["sequence"] for r in rows] == [2]  # b's; a's is leased
                assert await record_waits()  # the record is still in flight
            # The lock is gone: the record lands.

            async def recorded() -> bool:
                status = await conn.fetchval(
                    "SELECT status FROM webhook_deliveries WHERE id = $1", first["delivery_id"]
                )
                return bool(status == "succeeded")

            await _until(recorded)
    finally:
        await claimer.close()
        await recorder.close()
        await pool.close()


@pytest.mark.asyncio
async def test_claims_commit_without_waiting_for_the_wal_and_records_wait(fresh_dsn: str) -> None:
    """A claim lost with the database's last WAL is harmless (the delivery is
    pending again and sent again); a record must be durable: only the
    claimer's connection commits asynchronously, and only while it keeps it."""
    pool = await migrated_pool(fresh_dsn, max_size=3)
    claims: list[object] = []
    claimer = _Claimer(pool, lambda: T0, LEASE_S, lambda rows, *_: claims.append(rows))
    recorder = _Recorder(pool)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            claimer.claim(8)

            async def claimed() -> bool:
                return bool(claims)

            await _until(claimed)
            [rows] = claims
            assert isinstance(rows, list) and len(rows) == 1
            recorder.add(_attempted(rows[0], T0 + timedelta(milliseconds=1), 200))

            async def recorded() -> bool:
                status = await conn.fetchval("SELECT status FROM webhook_deliveries")
                return bool(status == "succeeded")

            await _until(recorded)
            # Both lanes are idle now, each on the connection it keeps.
            claim_conn = await claimer._lane.conn()
            record_conn = await recorder._lane.conn()
            assert await claim_conn.fetchval("SHOW synchronous_commit") == "off"
            assert await record_conn.fetchval("SHOW synchronous_commit") == "on"
            # Neither plans a sequential scan (tests/integration/test_webhook_claim_plan.py).
            assert await claim_conn.fetchval("SHOW enable_seqscan") == "off"
            assert await record_conn.fetchval("SHOW enable_seqscan") == "off"
        # Given back to the pool, the claimer's connection is reset (RESET ALL).
        await claimer.close()
        await recorder.close()
        async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
            shown = {await x.fetchval("SHOW synchronous_commit") for x in (a, b, c)}
            assert shown == {"on"}
            assert {await x.fetchval("SHOW enable_seqscan") for x in (a, b, c)} == {"on"}
    finally:
        await claimer.close()
        await recorder.close()
        await pool.close()
