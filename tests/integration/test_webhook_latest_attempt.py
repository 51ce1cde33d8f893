"""Migration 0029: the attempt recorded with a delivery's decision is kept in
the delivery's row, every other attempt in webhook_attempts_archive, and
webhook_attempts is their union. A first try writes no attempt row; the API
lists every attempt once, oldest first, with the same fields; a later
attempt, a late (fenced-out) one, a record made twice and a redelivery keep
every attempt; an upgraded database lists what it listed before. Asserted on
the worker's own statement against a migrated database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.store import migrate as migrate_module
from core.store.db import create_pool
from core.webhooks.endpoints import DeliveryFilter, Endpoints, RedeliverTarget
from core.webhooks.sealing import KEY_BYTES, Keyring
from core.webhooks.worker import Attempted, record
from tests.support.ledger import migrated_pool
from tests.support.webhook_rows import LEASE_S, T0
from tests.support.webhook_rows import attempted as _attempted
from tests.support.webhook_rows import claim as _claim
from tests.support.webhook_rows import deliveries as _deliveries

ATTEMPT_FIELDS = ("delivery_id", "attempt", "attempt_time", "status_code", "error", "duration_ms")


def _store(pool: asyncpg.Pool) -> Endpoints:
    return Endpoints(pool, 3600.0, 60, Keyring((("k", bytes(KEY_BYTES)),)))


async def _listed(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """Every attempt the API lists, delivery by delivery, as tuples of ATTEMPT_FIELDS."""
    rows, attempts = await _store(pool).deliveries("m", DeliveryFilter(None, None, None), 50, None)
    return [
        tuple(a[f] for f in ATTEMPT_FIELDS)
        for r in sorted(rows, key=lambda r: r["event_sequence"])
        for a in attempts[r["id"]]
    ]


def _expected(*attempted: Attempted) -> list[tuple[Any, ...]]:
    return [
        (
            a.claimed.delivery_id,
            a.claimed.attempt,
            a.started,
            a.outcome.status_code,
            a.outcome.error,
            a.duration_ms,
        )
        for a in attempted
    ]


async def _archived(conn: asyncpg.Connection) -> list[tuple[Any, int]]:
    return [
        (r["delivery_id"], r["attempt"])
        for r in await conn.fetch(
            "SELECT delivery_id, attempt FROM webhook_attempts_archive ORDER BY 1, 2"
        )
    ]


@pytest.mark.asyncio
async def test_a_first_try_writes_the_delivery_row_only_and_is_listed(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a", "merchants/m/invoices/b"])
            rows = await _claim(conn, T0)
            done = [_attempted(r, T0 + timedelta(milliseconds=1), 200) for r in rows]
            async with conn.transaction():
                await record(conn, done)
                written = await conn.fetchval(
                    """SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_xact_user_tables
                        WHERE relname = 'webhook_attempts_archive'"""
                )
            assert written == 0
            assert await _archived(conn) == []
            kept = await conn.fetch(
                """SELECT status, last_attempt, last_status_code, last_error
                     FROM webhook_deliveries ORDER BY event_sequence"""
            )
            assert [tuple(r) for r in kept] == [("succeeded", 1, 200, "")] * 2
        assert await _listed(pool) == _expected(*done)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_each_later_attempt_moves_the_one_before_to_the_archive(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        made: list[Attempted] = []
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            now = T0
            for status_code in (503, 500, 200):
                [row] = await _claim(conn, now)
                attempted = _attempted(row, now + timedelta(milliseconds=1), status_code)
                await record(conn, [attempted])
                made.append(attempted)
                now = attempted.decision.next_attempt_time or now
            delivery = made[0].claimed.delivery_id
            assert await _archived(conn) == [(delivery, 1), (delivery, 2)]
            assert await conn.fetchval("SELECT last_attempt FROM webhook_deliveries") == 3
            assert [a.outcome.error for a in made] == ["HTTP 503", "HTTP 500", ""]
        assert await _listed(pool) == _expected(*made)
    finally:
        await pool.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ["late_first", "late_last", "together"])
async def test_an_attempt_fenced_out_by_a_reclaim_is_listed_once(
    fresh_dsn: str, order: str
) -> None:
    """The first attempt's lease ran out and the delivery was claimed again:
    the first attempt's record is fenced out of the decision, its attempt is
    kept all the same (in the archive), whatever the order of the records."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            [first] = await _claim(conn, T0)
            [second] = await _claim(conn, T0 + timedelta(seconds=LEASE_S))
            late = _attempted(first, T0 + timedelta(seconds=1), 500)
            current = _attempted(second, T0 + timedelta(seconds=LEASE_S + 1), 200)
            batches = {
                "late_first": [[late], [current]],
                "late_last": [[current], [late]],
                "together": [[late, current]],
            }[order]
            for batch in batches:
                await record(conn, batch)
            row = await conn.fetchrow("SELECT status, last_attempt FROM webhook_deliveries")
            assert tuple(row) == ("succeeded", 2)
            assert await _archived(conn) == [(late.claimed.delivery_id, 1)]
        assert await _listed(pool) == _expected(late, current)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_record_made_again_adds_and_changes_nothing(fresh_dsn: str) -> None:
    """A record whose connection was lost after its commit, made again: the
    decision is fenced out (the first record moved update_time on) and the
    attempt, already in its row or in the archive, is not added twice."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a", "merchants/m/invoices/b"])
            rows = await _claim(conn, T0)
            first = [
                _attempted(r, T0 + timedelta(milliseconds=1), c)
                for r, c in zip(rows, (200, 503), strict=True)
            ]
            await record(conn, first)
            before = await conn.fetch("SELECT * FROM webhook_deliveries ORDER BY event_sequence")
            await record(conn, first)
            assert (
                await conn.fetch("SELECT * FROM webhook_deliveries ORDER BY event_sequence")
                == before
            )
            assert await _archived(conn) == []
            assert await _listed(pool) == _expected(*first)
            # The retried one's next attempt, then the first attempt's record once more.
            due = first[1].decision.next_attempt_time
            assert due is not None
            [row] = await _claim(conn, due)
            retried = _attempted(row, due + timedelta(milliseconds=1), 200)
            await record(conn, [retried])
            await record(conn, first)
            await record(conn, [retried])
            assert await _archived(conn) == [(first[1].claimed.delivery_id, 1)]
        assert await _listed(pool) == _expected(*first, retried)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_redelivery_keeps_the_earlier_attempts(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            [row] = await _claim(conn, T0)
            first = _attempted(row, T0 + timedelta(milliseconds=1), 200)
            await record(conn, [first])
        later = T0 + timedelta(minutes=1)
        delivery = first.claimed.delivery_id
        assert await _store(pool).redeliver("m", "ep", RedeliverTarget(delivery), later) == 1
        async with pool.acquire() as conn:
            [row] = await _claim(conn, later)
            again = _attempted(row, later + timedelta(milliseconds=1), 200)
            await record(conn, [again])
            assert await _archived(conn) == [(delivery, 1)]
        assert await _listed(pool) == _expected(first, again)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_an_upgraded_database_lists_its_attempts_as_before(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0028 -> 0029 with attempts in the table: each stays, listed as before
    (none moves into its delivery's row), and a delivery's next attempt,
    recorded after the upgrade, is listed after them."""
    every = migrate_module.load_migrations()
    with monkeypatch.context() as m:  # the migrator of a release that stopped at 0028
        m.setattr(migrate_module, "load_migrations", lambda: [x for x in every if x.version < 29])
        assert max(int(n[:4]) for n in await migrate_module.migrate(fresh_dsn)) == 28
    conn = await asyncpg.connect(fresh_dsn)
    try:
        resources = [f"merchants/m/invoices/{r}" for r in ("done", "retried", "waiting", "new")]
        await _deliveries(conn, resources)
        ids = [
            r["id"]
            for r in await conn.fetch("SELECT id FROM webhook_deliveries ORDER BY event_sequence")
        ]
        # 0028's record: one row per attempt. "done" took one, "retried" two,
        # "waiting" failed once and waits for its retry; "new" none.
        old = [
            (ids[0], 1, T0, 200, "", 4),
            (ids[1], 1, T0, None, "timeout", 10000),
            (ids[1], 2, T0 + timedelta(seconds=30), 200, "", 7),
            (ids[2], 1, T0, 503, "HTTP 503", 12),
        ]
        await conn.executemany(
            """INSERT INTO webhook_attempts
                 (delivery_id, attempt, attempt_time, status_code, error, duration_ms)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            old,
        )
        await conn.execute(
            """UPDATE webhook_deliveries
                  SET status = CASE WHEN id = $3 THEN 'pending' ELSE 'succeeded' END,
                      attempt_count = CASE WHEN id = $2 THEN 2 ELSE 1 END
                WHERE id = ANY($1::uuid[])""",
            ids[:3],
            ids[1],
            ids[2],
        )
    finally:
        await conn.close()
    pool = await migrated_pool(fresh_dsn)  # 0028 -> 0029
    try:
        assert await _listed(pool) == old
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE last_attempt IS NOT NULL"
                )
                == 0
            )
            assert len(await _archived(conn)) == 4
            rows = await _claim(conn, T0 + timedelta(hours=1))
            [waiting] = [r for r in rows if r["delivery_id"] == ids[2]]
            assert waiting["attempt_count"] == 2
            retried = _attempted(waiting, T0 + timedelta(hours=1), 200)
            await record(conn, [retried])
            assert len(await _archived(conn)) == 4
        assert await _listed(pool) == [*old, *_expected(retried)]
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_an_attempt_inserted_into_the_view_is_kept_in_the_archive(
    fresh_dsn: str,
) -> None:
    """An attempt written straight into webhook_attempts (an import; the events
    bench's history) is kept, as by the table before, and listed."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a"])
            delivery = await conn.fetchval("SELECT id FROM webhook_deliveries")
            await conn.execute(
                """INSERT INTO webhook_attempts
                     (delivery_id, attempt, attempt_time, status_code, duration_ms)
                   VALUES ($1, 1, $2, 200, 3)""",
                delivery,
                T0,
            )
            assert await _archived(conn) == [(delivery, 1)]
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    """INSERT INTO webhook_attempts
                         (delivery_id, attempt, attempt_time, status_code, duration_ms)
                       VALUES (gen_random_uuid(), 1, $1, 200, 3)""",
                    T0,
                )
        assert await _listed(pool) == [(delivery, 1, T0, 200, "", 3)]
    finally:
        await pool.close()


# Steps of one delivery's life, in any order: a claim (every lease has run
# out and every backoff is due by then: the clock moves LEASE_S + 11 s a
# step), the record of any attempt claimed so far (again, late, or fenced
# out), a redelivery.
_STEPS = st.lists(
    st.one_of(
        st.just(("claim", 0, 0)),
        st.tuples(st.just("record"), st.integers(0, 5), st.sampled_from([200, 503, 410])),
        st.just(("redeliver", 0, 0)),
    ),
    max_size=12,
)
_MIGRATED: set[str] = set()


async def _one_life(dsn: str, steps: list[tuple[str, int, int]]) -> None:
    if dsn not in _MIGRATED:
        await (await migrated_pool(dsn)).close()
        _MIGRATED.add(dsn)
    pool = await create_pool(dsn, max_size=4)  # redeliver takes two more
    try:
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT count(*) FROM merchants"):
                await _deliveries(conn, [])
            # The earlier examples' deliveries out of the claims' way.
            await conn.execute("UPDATE webhook_deliveries SET status = 'cancelled'")
            sequence = await conn.fetchval("SELECT coalesce(max(sequence), 0) + 1 FROM events")
            delivery = await conn.fetchval(
                """WITH e AS (
                     INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
                     VALUES ($1::bigint, gen_random_uuid(), 'invoice.paid', 'm',
                             'merchants/m/invoices/i' || $1::bigint, '')
                     RETURNING *)
                   INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence,
                       event_id, event_type, resource_name, status, next_attempt_time,
                       give_up_time, create_time, update_time)
                   SELECT gen_random_uuid(), 'ep', 'm', e.sequence, e.id, e.type,
                          e.resource_name, 'pending', $2::timestamptz, $2::timestamptz + interval '1 day', $2, $2
                     FROM e RETURNING id""",
                sequence,
                T0,
            )
            claimed: list[asyncpg.Record] = []
            recorded: dict[int, Attempted] = {}  # the first record of each attempt
            made: dict[int, Attempted] = {}
            now = T0
            for step, which, status_code in steps:
                now += timedelta(seconds=LEASE_S + 11)
                if step == "claim":
                    claimed += [r for r in await _claim(conn, now) if r["delivery_id"] == delivery]
                elif step == "record" and claimed:
                    row = claimed[which % len(claimed)]
                    attempted = made.setdefault(
                        row["attempt_count"],
                        _attempted(row, now - timedelta(seconds=LEASE_S + 10), status_code),
                    )
                    await record(conn, [attempted])
                    recorded.setdefault(attempted.claimed.attempt, attempted)
                elif step == "redeliver":
                    await _store(pool).redeliver("m", "ep", RedeliverTarget(delivery), now)
            kept = await conn.fetch(
                """SELECT delivery_id, attempt, attempt_time, status_code, error, duration_ms
                     FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt""",
                delivery,
            )
            # Each attempt recorded is kept once, as it was recorded; none other.
            assert [tuple(r) for r in kept] == _expected(*(recorded[k] for k in sorted(recorded)))
            in_row = await conn.fetchval(
                "SELECT last_attempt FROM webhook_deliveries WHERE id = $1", delivery
            )
            archived = {a for d, a in await _archived(conn) if d == delivery}
            assert in_row is None or in_row not in archived
    finally:
        await pool.close()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_every_attempt_recorded_is_kept_once_whatever_the_order(
    fresh_dsn: str, steps: list[tuple[str, int, int]]
) -> None:
    asyncio.run(_one_life(fresh_dsn, steps))


@pytest.mark.asyncio
async def test_two_attempts_of_one_delivery_in_one_record_are_both_kept(fresh_dsn: str) -> None:
    """A lease ran out and the delivery was claimed again while its first
    attempt was still out; both finish and are recorded together: the current
    attempt decides, the late one is fenced out into the archive (record's
    second statement, which takes the attempts its UPDATE did not return, by
    delivery and attempt: the delivery's id alone was returned for both)."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await _deliveries(conn, ["merchants/m/invoices/a", "merchants/m/invoices/b"])
            rows = await _claim(conn, T0)
            # The other delivery recorded in time: not claimed again.
            other = _attempted(rows[1], T0 + timedelta(milliseconds=1), 200)
            await record(conn, [other])
            later = T0 + timedelta(seconds=LEASE_S + 1)
            again = [
                r for r in await _claim(conn, later) if r["delivery_id"] == rows[0]["delivery_id"]
            ]
            late = _attempted(rows[0], later + timedelta(milliseconds=1), 503)
            current = _attempted(again[0], later + timedelta(milliseconds=2), 200)
            await record(conn, [late, current])
            assert await _archived(conn) == [(late.claimed.delivery_id, 1)]
            status = await conn.fetchval(
                "SELECT status FROM webhook_deliveries WHERE id = $1", late.claimed.delivery_id
            )
            assert status == "succeeded"
        assert sorted(await _listed(pool)) == sorted(_expected(late, current, other))
    finally:
        await pool.close()
