"""The claim (core/webhooks/worker.CLAIM_SQL) checks each candidate's ordering with
one probe of webhook_deliveries_order, whatever the statistics say: planned as an
anti-join on statistics that knew of no pending delivery (a burst just after an
ANALYZE), it compared every pending delivery with every other (1,000 pending:
1,000,000 rows removed by the join filter, 178 ms for one claim, in the events
bench). Plans are asserted by node and index names, never by time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from core.webhooks.worker import CLAIM_SQL
from tests.support.ledger import add_merchant, migrated_pool
from tests.support.plans import plan_nodes

PENDING = 1_000


@pytest.mark.asyncio
async def test_a_claim_probes_the_order_index_per_candidate_on_stale_statistics(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "m", "M")
            await conn.execute(
                """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
                   VALUES ('ep', 'm', 'https://example.test/hook', 'sealed', 0)"""
            )
            # Statistics of an empty table, then a burst the planner does not know of.
            await conn.execute("ANALYZE webhook_deliveries")
            await conn.execute(
                """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
                   SELECT n, gen_random_uuid(), 'invoice.created', 'm',
                          'merchants/m/invoices/i' || n, ''
                     FROM generate_series(1, $1) AS n""",
                PENDING,
            )
            await conn.execute(
                """INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence,
                       event_id, event_type, resource_name, status, next_attempt_time,
                       give_up_time)
                   SELECT gen_random_uuid(), 'ep', 'm', e.sequence, e.id, e.type,
                          e.resource_name, 'pending', now() - interval '1 s',
                          now() + interval '1 day'
                     FROM events e"""
            )
            now = await conn.fetchval("SELECT now()")
            tx = conn.transaction()
            await tx.start()
            try:
                raw = await conn.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM_SQL,
                    now,
                    32,
                    now - timedelta(seconds=30),
                )
            finally:
                await tx.rollback()
    finally:
        await pool.close()
    nodes = list(plan_nodes(json.loads(raw)[0]["Plan"]))
    assert not any("Anti" in n.get("Join Type", "") for n in nodes), raw
    assert all(n.get("Rows Removed by Join Filter", 0) == 0 for n in nodes), raw
    probes = [n for n in nodes if n.get("Index Name") == "webhook_deliveries_order"]
    assert probes and all(n.get("Parent Relationship") == "SubPlan" for n in probes), raw
    claimed = [n for n in nodes if n.get("Node Type") == "ModifyTable"]
    assert claimed and claimed[0]["Actual Rows"] == 32, raw
