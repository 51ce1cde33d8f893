"""Migration 0033: the count of failed webhook deliveries the metrics sampler
reports (kassa_webhook_deliveries{status="failed"}) is a number kept by
triggers on every change into or out of 'failed', not a count over the
deliveries' history. Asserted against count(*) after each of a random run of
the ways a delivery's status changes, committed or rolled back, and with two
transactions that change it at once."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from core.metrics import SAMPLE
from tests.support.ledger import migrated_pool
from tests.support.webhook_rows import endpoint_and_events

EVENTS = 60
STEPS = 120
STATUSES = ("pending", "succeeded", "failed", "cancelled")


async def _insert(conn: asyncpg.Connection, sequences: list[int], status: str) -> None:
    await conn.execute(
        """INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence,
               event_id, event_type, resource_name, status, next_attempt_time, give_up_time)
           SELECT gen_random_uuid(), 'ep', 'm', e.sequence, e.id, e.type, e.resource_name,
                  $2, now(), now() + interval '1 day'
             FROM events e WHERE e.sequence = ANY($1::bigint[])
           ON CONFLICT DO NOTHING""",
        sequences,
        status,
    )


async def _counted(conn: asyncpg.Connection) -> tuple[int, int]:
    """The sampler's count of failed deliveries, and count(*)'s."""
    row = await conn.fetchrow(SAMPLE)
    actual = await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'")
    return row["failed"], actual


async def _step(conn: asyncpg.Connection, rng: random.Random) -> None:
    """One change of some deliveries' status, as the dispatcher, the record,
    a redelivery, a cancellation or a clean-up makes it."""
    some = rng.sample(range(1, EVENTS + 1), rng.randint(1, 6))
    kind = rng.choice(("insert", "update", "update", "update", "delete"))
    if kind == "insert":
        await _insert(conn, some, rng.choice(STATUSES))
    elif kind == "update":
        # Several rows of one statement, some into and some out of 'failed'.
        await conn.execute(
            """UPDATE webhook_deliveries d SET status = u.status
                 FROM unnest($1::bigint[], $2::text[]) AS u(sequence, status)
                WHERE d.event_sequence = u.sequence""",
            some,
            [rng.choice(STATUSES) for _ in some],
        )
    else:
        await conn.execute(
            "DELETE FROM webhook_deliveries WHERE event_sequence = ANY($1::bigint[])", some
        )


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_failed_count_follows_every_change_committed_or_not(
    fresh_dsn: str, seed: int
) -> None:
    rng = random.Random(seed)
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await endpoint_and_events(conn, EVENTS)
            assert await _counted(conn) == (0, 0)
            for _ in range(STEPS):
                outcome = rng.choice(("commit", "commit", "rollback", "several"))
                tx = conn.transaction()
                await tx.start()
                try:
                    for _ in range(3 if outcome == "several" else 1):
                        await _step(conn, rng)
                finally:
                    if outcome == "rollback":
                        await tx.rollback()
                    else:
                        await tx.commit()
                counted, actual = await _counted(conn)
                assert counted == actual
            await conn.execute("TRUNCATE webhook_deliveries CASCADE")
            assert await _counted(conn) == (0, 0)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_give_up_and_a_redelivery_at_once_neither_deadlock_nor_miscount(
    fresh_dsn: str,
) -> None:
    """A record giving up on one delivery and then writing another, while a
    redelivery holds that other one and gives up a third: counted as each
    row is written, the two would each hold the counter's or a row's lock
    that the other waits for. Counted at the commit, both commit."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as setup:
            await endpoint_and_events(setup, EVENTS)
            await _insert(setup, [1, 2], "pending")
            await _insert(setup, [3], "failed")
        a, b = await pool.acquire(), await pool.acquire()
        try:
            ta, tb = a.transaction(), b.transaction()
            await ta.start()
            await tb.start()
            set_status = "UPDATE webhook_deliveries SET status = $2 WHERE event_sequence = $1"
            await a.execute(set_status, 1, "failed")
            await b.execute(set_status, 3, "pending")
            await b.execute(set_status, 2, "failed")
            # a now waits for b's row 2; b commits (counting), then a.
            waiting = asyncio.ensure_future(a.execute(set_status, 2, "succeeded"))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await asyncio.wait_for(tb.commit(), 10)
            await asyncio.wait_for(waiting, 10)
            await asyncio.wait_for(ta.commit(), 10)
        finally:
            await pool.release(a)
            await pool.release(b)
        async with pool.acquire() as conn:
            counted, actual = await _counted(conn)
            assert counted == actual == 1
    finally:
        await pool.close()
