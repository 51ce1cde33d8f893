"""Webhook rows made by hand against a migrated database: endpoints, events
and pending deliveries, claims with the worker's own statement, attempts as
the worker makes them, and the dispatcher's ids as PostgreSQL computes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from core.webhooks import retry
from core.webhooks.worker import CLAIM_SQL, Attempted, Claimed
from tests.support.ledger import add_merchant

LEASE_S = 25.0
# Backoff shorter than the lease: a retry falls due while the claim's lease would hold.
POLICY = retry.Policy(initial_backoff_s=2.0, max_backoff_s=10.0)
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def deliveries(conn: asyncpg.Connection, resources: list[str]) -> None:
    """One pending delivery per event, due at T0, one event per entry of `resources`."""
    await add_merchant(conn, "m", "M")
    await conn.execute(
        """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
           VALUES ('ep', 'm', 'https://example.test/hook', 'plain-secret', 0)"""
    )
    for n, resource in enumerate(resources, start=1):
        await conn.execute(
            """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
               VALUES ($1, gen_random_uuid(), 'invoice.paid', 'm', $2, '')""",
            n,
            resource,
        )
    await conn.execute(
        """INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_sequence, event_id,
               event_type, resource_name, status, next_attempt_time, give_up_time,
               create_time, update_time)
           SELECT gen_random_uuid(), 'ep', 'm', e.sequence, e.id, e.type, e.resource_name,
                  'pending', $1::timestamptz, $1::timestamptz + interval '1 day', $1, $1
             FROM events e""",
        T0,
    )


async def claim(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    return list(await conn.fetch(CLAIM_SQL, now, 8, now - timedelta(seconds=LEASE_S)))


def attempted(row: asyncpg.Record, started: datetime, status_code: int) -> Attempted:
    claimed = Claimed(
        delivery_id=row["delivery_id"],
        attempt=row["attempt_count"],
        give_up_time=row["give_up_time"],
        url=row["url"],
        signing_secrets=["s"],
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        body=b"{}",
        endpoint_id=row["endpoint_id"],
    )
    outcome = retry.Outcome(status_code, "" if status_code == 200 else f"HTTP {status_code}")
    now = started + timedelta(milliseconds=5)
    decision = retry.decide(POLICY, claimed.attempt, outcome, now, claimed.give_up_time, 0.5)
    return Attempted(claimed, started, 5, outcome, decision, now)


async def endpoints_and_events(conn: asyncpg.Connection, events: int) -> None:
    """Merchant m, its endpoints ep1 and ep2 (all events), events 1..`events`."""
    await add_merchant(conn, "m", "M")
    for endpoint in ("ep1", "ep2"):
        await conn.execute(
            """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
               VALUES ($1, 'm', 'https://example.test/hook', 'sealed', 0)""",
            endpoint,
        )
    await conn.copy_records_to_table(
        "events",
        records=[
            (n, uuid.uuid4(), "invoice.paid", "m", f"merchants/m/invoices/u{n}", b"")
            for n in range(1, events + 1)
        ],
        columns=("sequence", "id", "type", "merchant_id", "resource_name", "payload"),
    )
    await conn.execute("UPDATE event_sequence SET last = $1 WHERE id = 1", events)


def row_id(prefix: str, base: int, n: int) -> uuid.UUID:
    """Row n's id as _DISPATCH_SQL makes it: to_hex of a bigint is its 64 bits
    unsigned."""
    return uuid.UUID(prefix + format((base + n) % (1 << 64), "016x"))


async def endpoint_and_events(conn: asyncpg.Connection, events: int) -> None:
    """Merchant m, its endpoint 'ep' and `events` events (sequences 1..events), no deliveries."""
    await add_merchant(conn, "m", "M")
    await conn.execute(
        """INSERT INTO webhook_endpoints (id, merchant_id, url, secret, after_sequence)
           VALUES ('ep', 'm', 'https://example.test/hook', 'sealed', 0)"""
    )
    await conn.execute(
        """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
           SELECT n, gen_random_uuid(), 'invoice.created', 'm',
                  'merchants/m/invoices/i' || n, ''
             FROM generate_series(1, $1) AS n""",
        events,
    )
