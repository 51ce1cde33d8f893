"""Migration 0030: a delivery's endpoint and event are checked once a
statement (a trigger on the statement's new rows) instead of by two foreign
keys a row, and the rows they name can never go away. The guarantee is the
foreign keys': no delivery names an endpoint or event that does not exist,
whichever statement writes it; and the dispatcher no longer locks the event
rows it reads (the event foreign key's FOR KEY SHARE: a WAL record and a
dirtied page a delivery)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.webhooks.dispatch import dispatch_once
from core.webhooks.endpoints import Endpoints, RedeliverTarget
from core.webhooks.sealing import KEY_BYTES, Keyring
from tests.support.ledger import migrated_pool
from tests.support.webhook_rows import endpoints_and_events

NOW = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)

# A delivery by hand, as any writer could make one.
_INSERT = """INSERT INTO webhook_deliveries
               (id, endpoint_id, merchant_id, event_sequence, event_id, event_type,
                resource_name, status, next_attempt_time, give_up_time)
             SELECT gen_random_uuid(), u.endpoint_id, 'm', u.sequence, gen_random_uuid(),
                    'invoice.paid', 'merchants/m/invoices/x', 'pending', now(), now()
               FROM unnest($1::text[], $2::bigint[]) AS u(endpoint_id, sequence)"""


async def test_a_delivery_of_a_missing_endpoint_or_event_is_refused(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoints_and_events(conn, 10)
            await conn.execute(_INSERT, ["ep1", "ep2"], [1, 2])
            # One bad row among good ones refuses the whole statement.
            for endpoints, sequences in (
                (["ep1", "ep1", "nowhere"], [3, 4, 5]),
                (["ep1", "ep2", "ep1"], [3, 4, 11]),
                (["ep1"], [0]),
            ):
                with pytest.raises(asyncpg.ForeignKeyViolationError):
                    await conn.execute(_INSERT, endpoints, sequences)
            assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 2
            # A changed endpoint or event is checked as an insert is.
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    "UPDATE webhook_deliveries SET endpoint_id = 'nowhere' WHERE event_sequence = 1"
                )
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    "UPDATE webhook_deliveries SET event_sequence = 99 WHERE event_sequence = 1"
                )
            await conn.execute(
                "UPDATE webhook_deliveries SET event_sequence = 7 WHERE event_sequence = 1"
            )
            # A redelivery naming an endpoint that is not there creates nothing.
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(_INSERT, ["ep3"], [8])
    finally:
        await pool.close()


async def test_what_a_delivery_names_can_never_go_away(fresh_dsn: str) -> None:
    """Endpoints are deleted by their delete_time, events never: a DELETE, a
    change of an endpoint's id and a TRUNCATE are refused, named or not (the
    foreign keys refused a DELETE only of a named row, and let an unnamed
    endpoint's row go)."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoints_and_events(conn, 3)
            await conn.execute(_INSERT, ["ep1"], [1])
            for statement in (
                "DELETE FROM webhook_endpoints WHERE id = 'ep1'",
                "DELETE FROM webhook_endpoints WHERE id = 'ep2'",  # named by no delivery
                "UPDATE webhook_endpoints SET id = 'ep9' WHERE id = 'ep2'",
                "TRUNCATE webhook_endpoints CASCADE",
            ):
                with pytest.raises(asyncpg.ForeignKeyViolationError):
                    await conn.execute(statement)
            for statement in (
                "DELETE FROM events WHERE sequence = 3",
                "TRUNCATE events CASCADE",
            ):
                with pytest.raises(asyncpg.RaiseError):
                    await conn.execute(statement)
            assert await conn.fetchval("SELECT count(*) FROM webhook_endpoints") == 2
            assert await conn.fetchval("SELECT count(*) FROM events") == 3
            # What endpoints may do still works: soft deletion, other columns.
            await conn.execute(
                "UPDATE webhook_endpoints SET delete_time = now(), url = 'https://x.test/' "
                "WHERE id = 'ep2'"
            )
    finally:
        await pool.close()


async def test_the_dispatcher_and_a_redelivery_lock_no_event(fresh_dsn: str) -> None:
    """The event foreign key locked each event row a delivery was made of
    (FOR KEY SHARE: its xmax set, a WAL record, a dirtied page); the check
    takes no lock, since an event can never go away."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoints_and_events(conn, 200)
        assert await dispatch_once(pool, NOW, 3600, batch=150) == (150, 300)
        async with pool.acquire() as conn:
            for table in ("events", "webhook_endpoints"):
                locked = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE xmax <> '0'")  # noqa: S608
                assert locked == 0, table
            await conn.execute(
                "UPDATE webhook_dispatch_cursor SET last_sequence = 200 WHERE id = 1"
            )
        store = Endpoints(pool, 3600.0, 60, Keyring((("k", bytes(KEY_BYTES)),)))
        assert (
            await store.redeliver(
                "m", "ep1", RedeliverTarget(start_time=NOW - timedelta(days=1)), NOW
            )
            == 200
        )
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 350
            assert await conn.fetchval("SELECT count(*) FROM events WHERE xmax <> '0'") == 0
    finally:
        await pool.close()


async def test_the_check_probes_the_primary_keys(fresh_dsn: str) -> None:
    """The check's plan on a table of many events: a probe of events_pkey per
    new row, not a hash of every event (what a plain NOT EXISTS was planned as)."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoints_and_events(conn, 20_000)
            await conn.execute("ANALYZE events")
            await conn.execute(
                "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
                "SET auto_explain.log_nested_statements = on; "
                "SET auto_explain.log_level = notice; SET client_min_messages = notice"
            )
            plans: list[str] = []

            def listen(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
                plans.append(message.message)

            conn.add_log_listener(listen)
            await conn.execute(_INSERT, ["ep1"] * 100, list(range(1, 101)))
            conn.remove_log_listener(listen)
            await conn.execute("RESET ALL")
        checks = [p for p in plans if "new_deliveries" in p]
        assert len(checks) == 2, plans
        assert "events_pkey" in checks[1] and "Seq Scan on events" not in checks[1], checks[1]
        assert "webhook_endpoints_pkey" in checks[0], checks[0]
    finally:
        await pool.close()
