"""The claim (core/webhooks/worker.CLAIM_SQL) checks each candidate's ordering with
one probe of webhook_deliveries_order, whatever the statistics say: planned as an
anti-join on statistics that knew of no pending delivery (a burst just after an
ANALYZE), it compared every pending delivery with every other (1,000 pending:
1,000,000 rows removed by the join filter, 178 ms for one claim, in the events
bench). The claim and the record find their rows by index after statistics of
a quiet moment too (migration 0025, CLAIM_SETUP, RECORD_SETUP). Plans are
asserted by node and index names, never by time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from core.webhooks.dispatch import refresh_statistics
from core.webhooks.worker import _RECORD, CLAIM_SETUP, CLAIM_SQL, NEXT_DUE_SQL, RECORD_SETUP
from tests.support.ledger import migrated_pool
from tests.support.plans import plan_nodes
from tests.support.webhook_rows import endpoint_and_events

PENDING = 1_000
CLAIMED = 32


async def _pending(conn: asyncpg.Connection, first: int, last: int) -> None:
    """Due deliveries of events first..last, as the dispatcher stores them."""
    await conn.execute(
        """INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence,
               event_id, event_type, resource_name, status, next_attempt_time,
               give_up_time)
           SELECT gen_random_uuid(), 'ep', 'm', e.sequence, e.id, e.type,
                  e.resource_name, 'pending', now() - interval '1 s',
                  now() + interval '1 day'
             FROM events e WHERE e.sequence BETWEEN $1 AND $2""",
        first,
        last,
    )


async def _explained(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE's nodes of `sql`, run in a transaction rolled back."""
    tx = conn.transaction()
    await tx.start()
    try:
        raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    finally:
        await tx.rollback()
    return list(plan_nodes(json.loads(raw)[0]["Plan"]))


def _claim_args(now: datetime) -> tuple[datetime, int, datetime]:
    return now, CLAIMED, now - timedelta(seconds=30)


@pytest.mark.asyncio
async def test_a_claim_probes_the_order_index_per_candidate_on_stale_statistics(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            # Statistics of an empty table, then a burst the planner does not know of.
            await conn.execute("ANALYZE webhook_deliveries")
            await endpoint_and_events(conn, PENDING)
            await _pending(conn, 1, PENDING)
            now = await conn.fetchval("SELECT now()")
            nodes = await _explained(conn, CLAIM_SQL, *_claim_args(now))
    finally:
        await pool.close()
    assert not any("Anti" in n.get("Join Type", "") for n in nodes), nodes
    assert all(n.get("Rows Removed by Join Filter", 0) == 0 for n in nodes), nodes
    probes = [n for n in nodes if n.get("Index Name") == "webhook_deliveries_order"]
    assert probes and all(n.get("Parent Relationship") == "SubPlan" for n in probes), nodes
    claimed = [n for n in nodes if n.get("Node Type") == "ModifyTable"]
    assert claimed and claimed[0]["Actual Rows"] == CLAIMED, nodes


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("finished", "analyzed_in_burst"), [(2_000, False), (15_000, False), (2_000, True)]
)
async def test_the_claim_and_the_record_find_their_rows_by_index_after_a_quiet_moment(
    fresh_dsn: str, finished: int, analyzed_in_burst: bool
) -> None:
    """Statistics taken when nothing was pending, in a table of finished
    deliveries, then a burst (the events bench's late rounds, any quiet shop's
    next burst): the ordering probe walked webhook_deliveries_due with a filter
    instead of webhook_deliveries_order (the planner took the partial index it
    believed empty: ~450 entries per probe, 3.7-5.7 ms a claim against 0.4-0.7),
    and the record walked it too. On statistics of a small table taken in a
    burst, the claiming UPDATE found its rows by hashing a scan of the whole
    table."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoint_and_events(conn, finished + PENDING)
            await _pending(conn, 1, finished)
            # Delivered, as the record leaves them (dead entries in the due index).
            await conn.execute("UPDATE webhook_deliveries SET status = 'succeeded'")
            await conn.execute("ANALYZE webhook_deliveries")  # nothing pending
            await _pending(conn, finished + 1, finished + PENDING)
            if analyzed_in_burst:
                await refresh_statistics(pool)  # the dispatcher's, after a burst
            now = await conn.fetchval("SELECT now()")
            next_due = await _explained(conn, NEXT_DUE_SQL)
            await conn.execute(CLAIM_SETUP)  # the claimer's connection
            claim = await _explained(conn, CLAIM_SQL, *_claim_args(now))
            ids = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM webhook_deliveries WHERE status = 'pending' LIMIT $1", CLAIMED
                )
            ]
            await conn.execute("RESET ALL")
            await conn.execute(RECORD_SETUP)  # the recorder's
            n = len(ids)
            record = await _explained(
                conn,
                _RECORD,
                ids,
                [0] * n,
                [now] * n,
                [200] * n,
                [""] * n,
                [5] * n,
                ["succeeded"] * n,
                [None] * n,
                [now] * n,
            )
    finally:
        await pool.close()
    # The worker's idle wait still finds the next due time in the due index.
    assert any(n.get("Index Name") == "webhook_deliveries_due" for n in next_due), next_due
    subplans = [n for n in claim if n.get("Parent Relationship") == "SubPlan"]
    assert subplans, claim
    assert all(n.get("Index Name") == "webhook_deliveries_order" for n in subplans), claim
    deliveries = [n for n in claim if n.get("Relation Name") == "webhook_deliveries"]
    assert deliveries and all(n["Node Type"] != "Seq Scan" for n in deliveries), claim
    assert all(n["Node Type"] != "Seq Scan" for n in claim if n.get("Relation Name") == "events")
    claimed = [n for n in claim if n.get("Node Type") == "ModifyTable"]
    assert claimed and claimed[0]["Actual Rows"] == CLAIMED, claim
    found = [
        n
        for n in record
        if n.get("Relation Name") == "webhook_deliveries" and n["Node Type"] != "ModifyTable"
    ]
    assert found and all(n.get("Index Name") == "webhook_deliveries_pkey" for n in found), record
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in found) == CLAIMED, record


@pytest.mark.asyncio
async def test_the_dispatchers_analyze_tells_the_planner_of_a_burst(fresh_dsn: str) -> None:
    """refresh_statistics analyzes only the claim's columns: after it, the
    statistics count the burst's pending deliveries (status's values and the
    partial indexes' row counts), which an ANALYZE before the burst left at none."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoint_and_events(conn, 2_000 + PENDING)
            await _pending(conn, 1, 2_000)
            await conn.execute("UPDATE webhook_deliveries SET status = 'succeeded'")
            await conn.execute("ANALYZE webhook_deliveries")  # nothing pending
            await _pending(conn, 2_001, 2_000 + PENDING)

            async def known() -> tuple[float, float, float]:
                due, order = [
                    await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = $1", name)
                    for name in ("webhook_deliveries_due", "webhook_deliveries_order")
                ]
                share = await conn.fetchval(
                    """SELECT coalesce(sum(f), 0) FROM pg_stats,
                              unnest(most_common_vals::text::text[], most_common_freqs) AS m(v, f)
                        WHERE tablename = 'webhook_deliveries' AND attname = 'status'
                          AND v = 'pending'"""
                )
                return float(due), float(order), float(share)

            assert await known() == (0.0, 0.0, 0.0)
            await refresh_statistics(pool)
            due, order, share = await known()
    finally:
        await pool.close()
    assert due == order == PENDING, (due, order)
    assert share == pytest.approx(PENDING / (2_000 + PENDING), rel=0.01), share


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("finished", "analyzed"), [(0, "empty"), (2_000, "quiet"), (15_000, "quiet"), (2_000, "burst")]
)
async def test_the_claimers_one_plan_has_the_custom_plans_shape(
    fresh_dsn: str, finished: int, analyzed: str
) -> None:
    """The claimer's connection plans the claim once (CLAIM_SETUP: a generic
    plan, made without the call's due time and limit), on the statistics of
    the moment it is made: of an empty table, of a quiet moment among finished
    deliveries, of a burst. Each claims in due order from the due index and
    stops at the limit (no sort of every due delivery), probes the ordering
    index per candidate, and reads no table whole."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            if analyzed == "empty":
                await conn.execute("ANALYZE webhook_deliveries")
            await endpoint_and_events(conn, finished + PENDING)
            if finished:
                await _pending(conn, 1, finished)
                await conn.execute("UPDATE webhook_deliveries SET status = 'succeeded'")
            if analyzed == "quiet":
                await conn.execute("ANALYZE webhook_deliveries")
            await _pending(conn, finished + 1, finished + PENDING)
            if analyzed == "burst":
                await refresh_statistics(pool)
            await conn.execute(CLAIM_SETUP)
            await conn.execute(
                f"PREPARE claim_once (timestamptz, integer, timestamptz) AS {CLAIM_SQL}"
            )
            now = await conn.fetchval("SELECT now()")
            args = ", ".join(
                f"'{a.isoformat()}'" if isinstance(a, datetime) else str(a)
                for a in _claim_args(now)
            )
            nodes = await _explained(conn, f"EXECUTE claim_once ({args})")
            custom, generic = await conn.fetchrow(
                "SELECT custom_plans, generic_plans FROM pg_prepared_statements"
                " WHERE name = 'claim_once'"
            )
    finally:
        await pool.close()
    assert (custom, generic) == (0, 1)
    assert not any(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes), nodes
    assert not any("Anti" in n.get("Join Type", "") for n in nodes), nodes
    due = [n for n in nodes if n.get("Index Name") == "webhook_deliveries_due"]
    assert due and due[0]["Node Type"] == "Index Scan", nodes
    # In order, stopped at the limit: the leased rows stepped over are none here.
    assert due[0]["Actual Rows"] == CLAIMED, nodes
    probes = [n for n in nodes if n.get("Index Name") == "webhook_deliveries_order"]
    assert probes and all(n.get("Parent Relationship") == "SubPlan" for n in probes), nodes
    assert all(n["Node Type"] != "Seq Scan" for n in nodes), nodes
    claimed = [n for n in nodes if n.get("Node Type") == "ModifyTable"]
    assert claimed and claimed[0]["Actual Rows"] == CLAIMED, nodes
