"""From the outbox to stored deliveries.

The dispatcher follows the outbox by sequence and, in one transaction,
creates the deliveries of a batch of events and moves its cursor past them.
Sequences are gapless and increase in commit order, so nothing committed is
skipped; the cursor moves with the deliveries, so nothing is created twice;
and a delivery row exists before anything is sent (the sender reads only
delivery rows). Event-writing transactions are untouched: they hold the
outbox's sequence lock, and work done there would serialise every writer.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import asyncpg

BATCH = 1000
# The first batch after the dispatcher waited for events: a burst's first
# deliveries are claimable once this many are stored, not a whole BATCH (the
# events bench, 7 alternating pairs at load 5-11: a round's first attempt
# 0.11 s after its first event's commit, median of 21 rounds, against 0.07
# with this; the rest follow in BATCHes while those are sent).
FIRST_BATCH = 100
# Deliveries created since the table's statistics were refreshed, and how
# often at most: see refresh_statistics.
ANALYZE_AFTER = 1000
ANALYZE_EVERY_S = 10.0


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def time_ordered_prefix(now: datetime) -> bytes:
    """The first 8 bytes of a UUIDv7 made at `now`: 48 bits of Unix
    milliseconds, then the version (7) and rand_a, here 0. A redelivery
    overlays them on gen_random_uuid()'s bytes, whose last 8 keep its
    variant bits and 62 random bits, unique within a millisecond (the
    dispatcher's ids: batch_ids).

    Why: a random id puts each new delivery (and its attempts, whose key
    starts with it) on a random page of webhook_deliveries_pkey and
    webhook_attempts_pkey, and the first change of a page after a checkpoint
    writes the whole page into the WAL. The events bench with 300,000
    deliveries of history and a checkpoint before each round (`--history`,
    4 alternating pairs, load 3.4-5.9): WAL 8,070-8,280 -> 2,650-2,760 bytes
    per delivery (full-page images 0.46-1.23 -> 0.01), PostgreSQL's CPU per
    delivery 177-233 -> 130-160 us (medians of the runs' rounds, 4 of 4).
    Ids in time order append at the indexes' right edge instead. Without a
    past or a checkpoint (the bench's default) both are the same."""
    # Integer arithmetic: now.timestamp() is a float, whose microseconds are
    # lost in later centuries (an ms boundary then rounded the wrong way).
    ms = (now - _UNIX_EPOCH) // _ONE_MS
    assert 0 <= ms < 1 << 48, now
    return ms.to_bytes(6, "big") + b"\x70\x00"


def time_ordered_id(prefix_param: str) -> str:
    """The SQL of a new delivery's id: gen_random_uuid() with its first 8 bytes
    replaced by the bytea parameter `prefix_param` (time_ordered_prefix): a
    redelivery's new rows. The dispatcher's are batch_id's, of the same shape."""
    assert prefix_param.startswith("$") and prefix_param[1:].isdigit(), prefix_param
    return (
        f"encode(overlay(uuid_send(gen_random_uuid()) PLACING {prefix_param}::bytea "
        "FROM 1 FOR 8), 'hex')::uuid"
    )


# A batch's ids after their 16-hex-digit prefix: base + the row's number, as
# 16 hex digits. The base's top two bits are the variant's (10); below them 62
# random bits, less than 2**62 - 2**32, so that no batch's row numbers carry
# into the variant.
_ROWS_MAX = 1 << 32
_VARIANT = 0b10 << 62


def batch_ids(now: datetime, random: bytes) -> tuple[str, int]:
    """(prefix, base) of the ids of a batch of deliveries dispatched at `now`:
    row n of the batch (1, 2, ...) gets the UUIDv7 of the 32 hex digits
    `prefix` + `(base + n) mod 2**64` in hex, as _DISPATCH_SQL makes it.
    `prefix` is time_ordered_prefix's ms and version with 12 bits of `random`
    as rand_a; base (a signed bigint, as PostgreSQL adds it) is the variant
    and 62 bits of `random`.

    Why not time_ordered_id's gen_random_uuid() per row: each is a call of
    the strong random source, ~1.3 us of PostgreSQL's CPU a row (the overlay
    ~0.2 more), against ~0.5 for a row number in hex (300,000 rows, three
    runs: 1.6-2.4 against 0.5-0.6 us). The dispatcher's INSERT of 1,000
    events' deliveries, the two ids alternating batch by batch in one
    database: the backend's CPU per delivery, medians 19.3 -> 17.6 us (34 of
    39 pairs lower) and 12.9 -> 10.7 (54 of 59).

    Unique all the same: a batch's ids differ by their row numbers, and two
    batches of the same millisecond collide only if their 74 random bits
    (rand_a and base) fall within the batch's rows of each other
    (~2 * rows / 2**74), where random ids per row collide at
    ~rows**2 / 2**74 per pair of batches. In time order as before, and
    within a batch in insertion order (appends at the right edge of the
    primary key even within a millisecond)."""
    assert len(random) == 10, random
    prefix = bytearray(time_ordered_prefix(now))
    prefix[6] |= random[0] & 0x0F
    prefix[7] = random[1]
    spread = int.from_bytes(random[2:], "big") % ((1 << 62) - _ROWS_MAX)
    return prefix.hex(), (_VARIANT | spread) - (1 << 64)


def batch_id(prefix_param: str, base_param: str) -> str:
    """The SQL of row n's id (batch_ids): its row_number() in the statement."""
    for param in (prefix_param, base_param):
        assert param.startswith("$") and param[1:].isdigit(), param
    return f"({prefix_param}::text || to_hex({base_param}::bigint + row_number() OVER ()))::uuid"


# New deliveries of the events after the cursor, for every endpoint that takes them.
_DISPATCH_TEMPLATE = f"""WITH q AS (
     INSERT INTO webhook_deliveries
       (id, endpoint_id, merchant_id, event_sequence, event_id, event_type,
        resource_name, status, next_attempt_time, give_up_time, create_time,
        update_time)
     SELECT {batch_id("$5", "$6")}, e.id, ev.merchant_id, ev.sequence, ev.id, ev.type,
            ev.resource_name, 'pending', $3, $4, $3, $3
       FROM events ev
       JOIN webhook_endpoints e
         ON e.merchant_id = ev.merchant_id
        AND e.delete_time IS NULL AND NOT e.disabled
        AND ev.sequence > e.after_sequence
        AND (cardinality(e.event_types) = 0 OR ev.type = ANY(e.event_types))
      WHERE ev.sequence > $1 AND ev.sequence <= $2
     {{conflicts}}
     RETURNING 1)
   SELECT count(*) FROM q"""  # noqa: S608 (a constant, no input)
# As a rule a plain INSERT: the cursor moves with the deliveries it creates,
# so none of them exists yet, and the unique index refuses one that does.
# ON CONFLICT costs every row a probe of the unique index before its insert
# (which probes it again) and a speculative insertion (a lock, a
# confirmation's WAL record): the INSERT of 1,000 events' deliveries, the two
# alternating batch by batch in one database, backend CPU per delivery
# medians 12.4 -> 9.2 us (34 of 39 pairs lower).
_DISPATCH_SQL = _DISPATCH_TEMPLATE.format(conflicts="")
# Only after the plain INSERT met an existing delivery: a redelivery made
# some of the batch's (it takes an endpoint's events up to the newest, the
# cursor's future included). The conflict target is the listing's unique
# index (migration 0027): a delivery's merchant_id is its event's, so the
# triple is unique exactly when (endpoint_id, event_sequence) is.
_DISPATCH_EXISTING_SQL = _DISPATCH_TEMPLATE.format(
    conflicts="ON CONFLICT (merchant_id, event_sequence, endpoint_id) DO NOTHING"
)


def next_batch(asked: int, consumed: int) -> int:
    """The dispatcher's next batch after one of `asked` events found `consumed`: a
    whole BATCH while the outbox is behind (the batch came back full), else
    FIRST_BATCH (the dispatcher waited for events: a new burst begins)."""
    assert 0 <= consumed <= asked, (asked, consumed)
    return BATCH if consumed == asked else FIRST_BATCH


# What the claim (core/webhooks/worker.CLAIM_SQL) is planned on: its filter on
# status and due time, the lease's test, its order.
CLAIMED_STATISTICS = ("status", "next_attempt_time", "lease_time", "update_time")


async def refresh_statistics(pool: asyncpg.Pool) -> None:
    """ANALYZE webhook_deliveries, after a burst of new deliveries.

    Until the planner knows of a burst, the claim (core/webhooks/worker.py)
    is planned as if few deliveries were pending: a hash anti-join and a
    sort over every pending one, O(pending) per claim (6-15 ms at 3,000
    pending in the events bench, against 0.4 ms with fresh statistics,
    which walk the due index in order and stop at the claim's LIMIT).
    Autovacuum analyzes at most once a naptime (a minute by default), and a
    table never analyzed has no statistics at all. SKIP_LOCKED: never waits
    for a running (auto)vacuum, which refreshes them anyway.

    Only the columns the claim is estimated on (CLAIMED_STATISTICS); any
    ANALYZE refreshes the table's and its partial indexes' row counts, and
    autoanalyze keeps the other columns' statistics (the listing's) as before.
    At 300,000 deliveries with 3,000 pending, six alternations: 190-240 ms of
    PostgreSQL's CPU per ANALYZE of every column, 100-110 of these four. In
    the events bench (`--history 300000 --pg-statements`, three alternating
    pairs) 335-398 -> 159-191 ms a call, 37-44 -> 21-35 us per delivery.
    Their statistics target is 10 (migration 0028): a sample of 3,000 rows,
    not 30,000 (by itself at 300,000 deliveries, five alternations: 80-97 ->
    10-13 ms of PostgreSQL's CPU per ANALYZE)."""
    async with pool.acquire() as conn:
        await conn.execute(
            f"ANALYZE (SKIP_LOCKED) webhook_deliveries ({', '.join(CLAIMED_STATISTICS)})"
        )


async def dispatch_once(
    pool: asyncpg.Pool, now: datetime, give_up_after_s: float, batch: int = BATCH
) -> tuple[int, int]:
    """(events consumed, deliveries created) for the next batch of events."""
    try:
        return await _dispatch(pool, now, give_up_after_s, batch, _DISPATCH_SQL)
    except asyncpg.UniqueViolationError:
        # Rolled back, so done again whole, skipping what exists.
        return await _dispatch(pool, now, give_up_after_s, batch, _DISPATCH_EXISTING_SQL)


async def _dispatch(
    pool: asyncpg.Pool, now: datetime, give_up_after_s: float, batch: int, insert_sql: str
) -> tuple[int, int]:
    async with pool.acquire() as conn, conn.transaction():
        # The row lock makes dispatchers of several core processes take turns.
        cursor = await conn.fetchval(
            "SELECT last_sequence FROM webhook_dispatch_cursor WHERE id = 1 FOR UPDATE"
        )
        upto = await conn.fetchval(
            "SELECT max(sequence) FROM events WHERE sequence > $1 AND sequence <= $1 + $2",
            cursor,
            batch,
        )
        if upto is None:
            return 0, 0
        created = await conn.fetchval(
            insert_sql,
            cursor,
            upto,
            now,
            now + timedelta(seconds=give_up_after_s),
            *batch_ids(now, secrets.token_bytes(10)),
        )
        await conn.execute(
            "UPDATE webhook_dispatch_cursor SET last_sequence = $1 WHERE id = 1", upto
        )
        return int(upto - cursor), int(created)
