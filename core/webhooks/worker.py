"""Sends stored deliveries: claim, send outside any transaction, record.

A worker claims due deliveries with SELECT … FOR UPDATE SKIP LOCKED and
leases them (lease_time: the lease runs to the end of the attempt's timeout
plus a grace), commits, sends with a hard timeout, then records the attempt
and what `retry.decide` says. A process that dies mid-attempt leaves the
lease to run out, and any worker retries: delivery is at least once, and
the event id (Kassa-Event-Id) lets receivers drop the duplicate. Records
and claims each have a kept connection of their own (_Recorder, _Claimer):
a claim never waits for a record's statement.

Order: per endpoint and resource (an invoice), a delivery is sent only when
no earlier one is still pending, so each invoice's events arrive in sequence
order; other invoices and other endpoints are not held up by a failing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from core import metrics
from core.events.stream import OutboxNotifier
from core.render import events as resources
from core.telemetry.logs import REQUEST_ID, DirectLine, json_value
from core.webhooks import retry, signing, targets
from core.webhooks.delivery_http import DeliveryClient, HttpClientError, request_head, target
from core.webhooks.dispatch import (
    ANALYZE_AFTER,
    ANALYZE_EVERY_S,
    FIRST_BATCH,
    dispatch_once,
    next_batch,
    refresh_statistics,
)
from core.webhooks.sealing import Keyring, SealError, unseal
from core.webhooks.settings import WebhookSettings

log = logging.getLogger("kassa.core.webhooks")
# targets.url_problem is pure, and every attempt checks its endpoint's URL
# again (~7 us a time, more than the HMAC): remembered per URL.
_url_problem = functools.lru_cache(maxsize=1024)(targets.url_problem)
USER_AGENT = "Kassa-Webhooks/1"
FIXED_HEADERS = (("Content-Type", "application/json"), ("User-Agent", USER_AGENT))
MAX_ERROR_LEN = 500


@functools.cache
def _attempts_counter(status: retry.Status) -> Any:
    """WEBHOOK_ATTEMPTS' child for an outcome (labels() takes a lock and
    builds a key at each call; a child is created on its first attempt)."""
    return metrics.WEBHOOK_ATTEMPTS.labels(status.value)


# Claimed and Attempted: one of each per attempt, made in the delivery loop.
# Slots, not frozen: a frozen dataclass sets each field through
# object.__setattr__ (thread CPU per construction, 50,000 a run, best of five:
# Claimed's nine fields 1.30 -> 0.50 us, Attempted's six 0.73 -> 0.19; three
# alternations). Nothing changes them once made, nor hashes them.
@dataclass(slots=True)
class Claimed:
    delivery_id: uuid.UUID
    attempt: int
    give_up_time: datetime
    url: str
    signing_secrets: list[str]
    event_id: str
    event_type: str
    body: bytes
    # Which endpoint's connection pool and concurrency slots the attempt uses.
    endpoint_id: str = ""


@dataclass(slots=True)
class Attempted:
    """A finished attempt, waiting to be recorded with others in one statement."""

    claimed: Claimed
    started: datetime
    duration_ms: int
    outcome: retry.Outcome
    decision: retry.Decision
    now: datetime


# A sealed secret opened once per process, not once per claim: the same sealed
# bytes of the same endpoint under the same keyring open to the same secret
# (AES-GCM, authenticated), and a rotation or a re-seal stores new bytes, so the
# claim's row still decides which secret signs. Opening is ~5 us (an AESGCM made
# and a decryption), and a claim opened each endpoint's: with one endpoint per
# delivery, ~5 us a delivery. claimed_of of 16 rows of 16 endpoints, thread CPU
# per delivery, best of seven, four alternations: 4.4-5.7 -> 1.4-1.5 us (one
# endpoint a claim, as in the events bench: ~0.4). What fails to open is not
# remembered (lru_cache keeps no exception): it is tried again at the next claim.
# The process holds these secrets while it signs with them, and the keyring that
# opens every one of them, anyway.
_unseal = functools.lru_cache(maxsize=4096)(unseal)


def signing_secrets(
    endpoint_id: str, endpoint: Mapping[str, Any], now: datetime, keyring: Keyring
) -> list[str]:
    """The current secret, and the previous one while its overlap lasts, unsealed
    (a row not yet re-sealed at start may hold them in clear)."""

    def opened(sealed_column: str, plain_column: str) -> str | None:
        sealed = endpoint[sealed_column]
        if sealed is not None:
            return _unseal(keyring, endpoint_id, bytes(sealed))
        plain = endpoint[plain_column]
        return None if plain is None else str(plain)

    current = opened("secret_sealed", "secret")
    assert current is not None, "one form of the secret is always stored"
    found = [current]
    expire = endpoint["previous_secret_expire_time"]
    if expire is not None and now < expire:
        previous = opened("previous_secret_sealed", "previous_secret")
        if previous:
            found.append(previous)
    return found


def client_session(settings: WebhookSettings, limit: int | None = None) -> DeliveryClient:
    """The HTTP client of deliveries (one per endpoint, `limit` connections
    kept): it connects only to what the SSRF-checking resolver returned (the
    checked address is the one connected to); no proxies. Connections are
    kept alive and reused (core/webhooks/delivery_http.py)."""
    return DeliveryClient(settings.allow_private_targets, limit or settings.concurrency)


def headers(claimed: Claimed, now: datetime) -> dict[str, str]:
    """The delivery's own fields (after Host and FIXED_HEADERS)."""
    return {
        "Kassa-Event-Id": claimed.event_id,
        "Kassa-Event-Type": claimed.event_type,
        "Kassa-Delivery-Id": str(claimed.delivery_id),
        "Kassa-Signature": signing.header(
            claimed.signing_secrets, int(now.timestamp()), claimed.body
        ),
    }


# Claims, leases and reads what the attempts need in one statement: each
# round trip of a claim was time every slot waited (claims took 15-30 ms
# under load as three statements, longer than the sends they fed).
# $1 now, $2 the limit, $3 now minus the lease (the oldest claim whose
# lease holds).
#
# The lease is lease_time, a column no index covers, so the claim changes
# no indexed column and is a HOT update (migration 0023: it moved
# next_attempt_time, and wrote an entry in each of the six indexes per
# delivery). A lease is in force while the row has not been written since
# (lease_time = update_time: the record, a redelivery and a cancellation
# all move update_time) and is younger than the lease; a leased row stays
# in the due index at its due time, and the claim steps over it (at most
# the attempts in flight).
CLAIM_SQL = """
WITH due AS (
  SELECT d.id FROM webhook_deliveries d
   WHERE d.status = 'pending' AND d.next_attempt_time <= $1
     AND (d.lease_time IS NULL OR d.lease_time <> d.update_time
          OR d.lease_time <= $3)
     -- OFFSET 0 keeps NOT EXISTS a subplan: one probe of webhook_deliveries_order
     -- per candidate, whatever the statistics say. As an anti-join it was planned
     -- on them, and on statistics that knew of no pending delivery (a burst just
     -- after an ANALYZE) it compared every pending delivery with every other:
     -- 1,000 pending, 86 ms for one claim against 2 ms as a subplan
     -- (tests/integration/test_webhook_claim_plan.py; 178 ms in the events bench).
     AND NOT EXISTS (
       SELECT 1 FROM webhook_deliveries p
        WHERE p.endpoint_id = d.endpoint_id AND p.resource_name = d.resource_name
          AND p.status = 'pending' AND p.event_sequence < d.event_sequence
        OFFSET 0)
   -- Index order, so the scan stops at LIMIT; the order
   -- between invoices does not matter, within one NOT EXISTS keeps it.
   ORDER BY d.next_attempt_time
   LIMIT $2
   FOR UPDATE OF d SKIP LOCKED),
claimed AS (
  UPDATE webhook_deliveries d
     SET lease_time = $1, attempt_count = d.attempt_count + 1, update_time = $1
    FROM due WHERE d.id = due.id
  RETURNING d.id, d.attempt_count, d.give_up_time, d.event_id, d.event_type,
            d.event_sequence, d.endpoint_id)
SELECT c.id AS delivery_id, c.attempt_count, c.give_up_time, c.event_id, c.event_type,
       c.endpoint_id, e.url, e.secret, e.secret_sealed, e.previous_secret,
       e.previous_secret_sealed, e.previous_secret_expire_time,
       ev.sequence, ev.id, ev.type, ev.resource_type, ev.payload, ev.create_time
  FROM claimed c
  JOIN webhook_endpoints e ON e.id = c.endpoint_id
  JOIN events ev ON ev.sequence = c.event_sequence
"""


class _Bodies:
    """Each event's body rendered once per process, not once per delivery:
    an event goes to each of its merchant's endpoints, and its canonical
    JSON (~19 us for the bench's invoice event, from the row: events.row_json)
    is the same bytes for all of them. Keyed by the event's id (a UUID, so never confused across databases); events
    are immutable. Oldest first out: claims follow the outbox's order.

    An OrderedDict, whose popitem(last=False) unlinks the oldest at once: a
    dict's first key (next(iter(...))) is found by stepping over the slots its
    earlier deletions left, up to SIZE of them until it is resized, so once
    full every new event paid a scan. The cache's own thread CPU per new event
    of a full cache (rendering left out), 55,000 events a run, best of five,
    four alternations: 2.56-2.84 -> 0.55-0.60 us (the events bench renders
    9,000 events: the cache is full after its first 4,096)."""

    SIZE = 4096

    def __init__(self) -> None:
        self._bodies: OrderedDict[uuid.UUID, bytes] = OrderedDict()

    def of(self, row: Mapping[str, Any]) -> bytes:
        event_id = row["event_id"]
        body = self._bodies.get(event_id)
        if body is None:
            body = resources.row_json(row)
            if len(self._bodies) >= self.SIZE:
                self._bodies.popitem(last=False)
            self._bodies[event_id] = body
        return body


_BODIES = _Bodies()


def claimed_of(rows: Sequence[Mapping[str, Any]], now: datetime, keyring: Keyring) -> list[Claimed]:
    """The attempts of claimed rows (CLAIM_SQL's columns)."""
    # Unsealed once per endpoint, not once per delivery.
    secrets: dict[str, list[str]] = {}
    found: list[Claimed] = []
    for r in rows:
        endpoint_id = r["endpoint_id"]
        if endpoint_id not in secrets:
            secrets[endpoint_id] = signing_secrets(endpoint_id, r, now, keyring)
        found.append(
            Claimed(
                delivery_id=r["delivery_id"],
                attempt=r["attempt_count"],
                give_up_time=r["give_up_time"],
                url=r["url"],
                signing_secrets=secrets[endpoint_id],
                event_id=str(r["event_id"]),
                event_type=r["event_type"],
                body=_BODIES.of(r),
                endpoint_id=endpoint_id,
            )
        )
    return found


# Only the holder of the current attempt decides: a re-claim after a lost
# lease has moved attempt_count on, and a redelivery asked for after the
# attempt started has moved update_time past it (its send must still come).
# Records and claims run on two connections at once. Should a lease have
# run out, a record and a re-claim may meet on one row: a claim skips a row
# the record holds (SKIP LOCKED), and a record that waited for a claim finds
# attempt_count moved on and is fenced out; either order is as with one
# statement after the other (at least once).
#
# "Not finished" rather than status = 'pending' (the same rows: the CHECK allows
# these four), so that no partial index on pending deliveries can serve the
# record: on statistics taken when nothing was pending the planner believed
# them empty and walked one of them whole, filtered, for every record, where
# the primary key finds each row (auto_explain in the events bench's late
# rounds: records of 1.2-6 ms against 0.5-0.9; tests/integration/
# test_webhook_claim_plan.py). Its connection runs RECORD_SETUP.
#
# Every attempt is kept, decided or not (migration 0029; webhook_attempts is a
# view of the two places): the decided one in its delivery's row (last_*; the
# one it replaces moves to webhook_attempts_archive by the table's trigger),
# one fenced out in the archive, unless it is already its row's (this record
# made again after a lost connection: the statement's snapshot tells). A
# first try is then the UPDATE alone, where it was also an attempt row, its
# key, ON CONFLICT's speculative insertion and the foreign key's check, which
# locked the row's new version. `fenced` is MATERIALIZED so that the row's
# probe runs for fenced attempts only (the planner put it first: one more
# primary-key descent per attempt). The statement by itself (3,000
# deliveries, records of 13, five alternations): PostgreSQL's CPU 47-63 ->
# 33-60 us per delivery (medians 53 -> 43), WAL 605-617 -> 341-345 B. The
# events bench (--pg-statements, 17 alternating pairs): its execution time
# 33-55 -> 22-44 us per delivery (17 of 17), WAL -190 to -260 B a delivery.
_RECORD = """
WITH attempts AS (
    SELECT * FROM unnest($1::uuid[], $2::integer[], $3::timestamptz[], $4::integer[],
                         $5::text[], $6::integer[], $7::text[], $8::timestamptz[],
                         $9::timestamptz[])
        AS u(id, attempt, started, status_code, error, duration_ms, status,
             next_attempt_time, now)
), recorded AS (
    UPDATE webhook_deliveries d
       SET status = u.status, next_attempt_time = coalesce(u.next_attempt_time, d.next_attempt_time),
           update_time = u.now, last_attempt = u.attempt, last_attempt_time = u.started,
           last_status_code = u.status_code, last_error = u.error,
           last_duration_ms = u.duration_ms
      FROM attempts u
     WHERE d.id = u.id AND d.attempt_count = u.attempt
       AND d.status NOT IN ('succeeded', 'failed', 'cancelled')
       AND d.update_time <= u.started
    RETURNING d.id, d.last_attempt
), fenced AS MATERIALIZED (
    SELECT * FROM attempts u
     WHERE NOT EXISTS (SELECT 1 FROM recorded r WHERE r.id = u.id AND r.last_attempt = u.attempt)
)
INSERT INTO webhook_attempts_archive
    (delivery_id, attempt, attempt_time, status_code, error, duration_ms)
SELECT f.id, f.attempt, f.started, f.status_code, f.error, f.duration_ms
  FROM fenced f
 WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.id = f.id AND d.last_attempt = f.attempt)
ON CONFLICT DO NOTHING
"""
# The recorder's connection runs _RECORD only: its rows by primary key, never
# by a scan of the table (small tables, as for CLAIM_SETUP).
RECORD_SETUP = "SET enable_seqscan = off"


def _recordable(error: str) -> str:
    """An attempt's error as PostgreSQL's text takes it: no NUL (the receiver's
    words reach it, e.g. a reason phrase; one NUL failed the whole batch's
    statement, and every attempt in it went unrecorded and was sent again),
    at most MAX_ERROR_LEN characters."""
    return error.replace("\x00", "")[:MAX_ERROR_LEN]


def _record_args(attempted: Sequence[Attempted]) -> list[list[Any]]:
    return [
        [a.claimed.delivery_id for a in attempted],
        [a.claimed.attempt for a in attempted],
        [a.started for a in attempted],
        [a.outcome.status_code for a in attempted],
        [_recordable(a.outcome.error) for a in attempted],
        [a.duration_ms for a in attempted],
        [a.decision.status.value for a in attempted],
        [a.decision.next_attempt_time for a in attempted],
        [a.now for a in attempted],
    ]


async def record(conn: asyncpg.Connection, attempted: Sequence[Attempted]) -> None:
    """Records finished attempts and their decisions, many in one statement
    (one round trip and one commit, where each attempt took a transaction)."""
    if not attempted:
        return
    await conn.execute(_RECORD, *_record_args(attempted))


async def claim(
    conn: asyncpg.Connection, limit: int, now: datetime, lease_s: float
) -> list[asyncpg.Record]:
    """Claims up to `limit` due deliveries (CLAIM_SQL's rows)."""
    assert limit > 0, "a claim asks for at least one delivery"
    return list(await conn.fetch(CLAIM_SQL, now, limit, now - timedelta(seconds=lease_s)))


# The attempt's line (one per delivery) without a LogRecord: the same bytes
# (tests/unit/test_attempt_line.py); 29 -> 12 us a line by thread CPU, the delivery
# process's logging (lean records, its mark), 30,000 lines, five alternations.
# The attempts recorded by one statement write their lines together: one write,
# the fields and the mark joined, not a dict encoded per line (DirectLine.write_lines):
# Thread CPU per line written to a file, the mark set, batches of 13 (the events
# bench's mean record: 9,000 attempts in 702 statements), 26,000 lines, three
# alternations: 9.2 -> 2.8 us (to /dev/null, five: 8.0 -> 2.3).
_ATTEMPT_LINE = DirectLine(log)
_LINE_KEYS = frozenset(("delivery", "event_id", "attempt", "status_code", "error", "decision"))


def _line_fields(attempted: Attempted) -> dict[str, Any]:
    claimed, outcome = attempted.claimed, attempted.outcome
    return {
        "delivery": str(claimed.delivery_id),
        "event_id": claimed.event_id,
        "attempt": claimed.attempt,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "decision": attempted.decision.status.value,
    }


def _line_fields_json(attempted: Attempted) -> str:
    """encoded_fields(_line_fields(attempted)), joined by hand: a UUID's text and
    the decision's value need no escaping, the counts are ints (1.5 against 5.0 us
    a line in a loop: the keys' JSON and the dict not made per attempt)."""
    claimed, outcome = attempted.claimed, attempted.outcome
    code = outcome.status_code
    return "".join(
        (
            ', "delivery": "',
            str(claimed.delivery_id),
            '", "event_id": ',
            json_value(claimed.event_id),
            ', "attempt": ',
            int.__repr__(claimed.attempt),
            ', "status_code": ',
            "null" if code is None else int.__repr__(code),
            ', "error": ',
            json_value(outcome.error),
            ', "decision": "',
            attempted.decision.status.value,
            '"',
        )
    )


def _recorded_all(batch: Sequence[Attempted]) -> None:
    """Each attempt's line (one per attempt, read by operators) and count."""
    counts: dict[retry.Status, int] = {}
    for attempted in batch:
        status = attempted.decision.status
        counts[status] = counts.get(status, 0) + 1
    for status, n in counts.items():
        _attempts_counter(status).inc(n)
    request_id = REQUEST_ID.get()
    if not _ATTEMPT_LINE.write_lines(
        "webhook attempt", request_id, _LINE_KEYS, [_line_fields_json(a) for a in batch]
    ):
        for attempted in batch:
            fields = _line_fields(attempted)
            if not _ATTEMPT_LINE.write("webhook attempt", request_id, fields):
                log.info("webhook attempt", extra=fields)


# What a claim brought: its rows, or what the statement raised.
ClaimResult = list[asyncpg.Record] | Exception


class _Lane:
    """A connection of the worker's own, kept between statements (the pool's
    reset on release was one more round trip each) and given back after any
    error; `setup` runs once on each connection taken."""

    def __init__(self, pool: asyncpg.Pool, setup: str | None = None) -> None:
        self.pool = pool
        self.setup = setup
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            conn = await self.pool.acquire()
            if self.setup is not None:
                try:
                    await conn.execute(self.setup)
                except BaseException:
                    await self.pool.release(conn)
                    raise
            self._conn = conn
        return self._conn

    def start(self, run: Callable[[], Any], name: str) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(run(), name=name)

    async def give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)  # its reset (RESET ALL) undoes `setup`

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.give_back()


class _Recorder:
    """Records the attempts that finish together in one statement (while one
    is in flight, the next ones gather for the following one), then logs
    and counts each."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._lane = _Lane(pool, RECORD_SETUP)
        self._waiting: list[Attempted] = []

    def add(self, attempted: Attempted) -> None:
        """Records the attempt with the next statement, then logs and counts
        it; if recording fails, says so (its lease runs out, it is retried)."""
        self._waiting.append(attempted)
        self._lane.start(self._flush, "webhook records")

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await record(await self._lane.conn(), batch)
            except Exception as exc:  # the database, mostly: asyncpg.InterfaceError included
                await self._lane.give_back()
                for _ in batch:
                    # Its lease runs out and the attempt is made again.
                    log.warning("webhook attempt not recorded", extra={"error": type(exc).__name__})
            else:
                _recorded_all(batch)

    async def close(self) -> None:
        await self._lane.close()


# The claim's connection commits without waiting for its WAL to reach disk
# (synchronous_commit off, this session only). A claim lost in a crash of
# the database is harmless: the delivery is pending again with its old
# attempt count, and is sent again (at least once), as after a lease that
# ran out. A record is never durable without the claim it fences on: the
# record commits synchronously on another connection, and flushing its
# commit flushes all WAL before it, the claim's included.
#
# No sequential scans on it either (the connection runs CLAIM_SQL only, and
# each of its tables has the index it needs): on statistics of a small table
# (the first few thousand deliveries, the bench's first rounds) the planner
# found the claimed rows and their events by hashing a scan of the whole
# table, 1.5 ms of a 2.4 ms claim of 32 rows where 32 index probes take ~0.1
# (auto_explain in the events bench; tests/integration/test_webhook_claim_plan.py).
#
# One plan for every claim (plan_cache_mode): the claim was planned anew at
# each call (a custom plan every time: its LIMIT $2 and due time make the
# generic plan's estimate dearer than any custom one's), ~0.2 ms of planning
# a claim that pg_stat_statements' execution time does not show. The claimer
# backend's CPU per delivery, claims of 13 of 3,000 due, six alternations:
# 64-96 -> 35-65 us (medians 84 -> 52); the events bench on a quiet machine,
# eight alternating pairs, PostgreSQL's CPU per delivery (least of a run's
# rounds) 110-177 -> 107-140 us (medians 141.5 -> 127, 7 of 8 lower), the
# rate higher in 6 of 8 (means 4,293 -> 4,498/s). The generic plan has the custom
# plans' shape (the due index in order under the LIMIT, the ordering probe a
# subplan: the OFFSET 0), on statistics of any moment; an ANALYZE (the
# dispatcher's after a burst) makes it anew. Without sorts: made on the
# statistics of an empty table, the generic plan sorted a bitmap scan of
# every due delivery, each probed for its order, before the LIMIT; the due
# index gives that order (tests/integration/test_webhook_claim_plan.py).
CLAIM_SETUP = (
    "SET synchronous_commit = off; SET enable_seqscan = off; "
    "SET plan_cache_mode = force_generic_plan; SET enable_sort = off"
)


class _Claimer:
    """Claims due deliveries on a connection of its own, beside the records:
    a slot freed waits for one claim's round trip, never for a record's
    statement and its fsync (measured: with records and claims in one
    statement, a freed slot waited for the statement in flight and then its
    own, and 12 of 32 slots were sending on average)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Callable[[], datetime],
        lease_s: float,
        on_claimed: Callable[[ClaimResult, int, datetime], None],
    ) -> None:
        self._lane = _Lane(pool, CLAIM_SETUP)
        self.clock = clock
        self.lease_s = lease_s
        self.on_claimed = on_claimed
        # Deliveries the next statement claims (their slots are reserved).
        self._want = 0

    def claim(self, limit: int) -> None:
        """The next statement claims up to `limit` more deliveries; its rows
        (or what it raised) go to on_claimed, with the limit and its time."""
        assert limit > 0
        self._want += limit
        self._lane.start(self._flush, "webhook claims")

    async def _flush(self) -> None:
        while self._want:
            want, self._want = self._want, 0
            now = self.clock()
            try:
                rows = await claim(await self._lane.conn(), want, now, self.lease_s)
            except Exception as exc:  # the database, mostly: asyncpg.InterfaceError included
                await self._lane.give_back()
                self.on_claimed(exc, want, now)
            else:
                self.on_claimed(rows, want, now)

    async def close(self) -> None:
        await self._lane.close()


# When the next delivery falls due: one step into webhook_deliveries_due (its
# predicate holds for min(), which the planner runs as a scan of the key's
# non-null values in order; migration 0025).
NEXT_DUE_SQL = "SELECT min(next_attempt_time) FROM webhook_deliveries WHERE status = 'pending'"


class _Endpoints:
    """Per endpoint: its own connection pool (kept alive, reused) and at most
    `endpoint_concurrency` attempts at once, so one slow receiver holds only
    its own slots; sessions unused for a while are closed."""

    IDLE_CLOSE_S = 300.0
    # Looked for at most this often: the loop wakes at every attempt's end,
    # and each look walks every endpoint and every attempt in flight.
    CLOSE_CHECK_S = 10.0

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, tuple[DeliveryClient, asyncio.Semaphore]] = {}
        self._used: dict[str, float] = {}
        self._checked = time.monotonic()

    def get(self, endpoint_id: str) -> tuple[DeliveryClient, asyncio.Semaphore]:
        found = self._sessions.get(endpoint_id)
        if found is None:
            limit = self.settings.endpoint_concurrency
            found = (client_session(self.settings, limit), asyncio.Semaphore(limit))
            self._sessions[endpoint_id] = found
        self._used[endpoint_id] = time.monotonic()
        return found

    def check_due(self) -> bool:
        """Whether close_idle has something to look at now."""
        return time.monotonic() - self._checked >= self.CLOSE_CHECK_S

    async def close_idle(self, in_use: set[str]) -> None:
        self._checked = time.monotonic()
        cutoff = self._checked - self.IDLE_CLOSE_S
        for endpoint_id in [e for e, t in self._used.items() if t < cutoff and e not in in_use]:
            session, _ = self._sessions.pop(endpoint_id)
            del self._used[endpoint_id]
            await session.close()

    async def close(self) -> None:
        for session, _ in self._sessions.values():
            await session.close()
        self._sessions.clear()
        self._used.clear()


class DeliveryWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        notifier: OutboxNotifier | None,
        settings: WebhookSettings,
        clock: Callable[[], datetime],
        keyring: Keyring,
        on_created: Callable[[], None] | None = None,
    ) -> None:
        """Without a notifier the worker only sends (a delivery process:
        core/webhooks/process.py), and the core's dispatcher wakes it
        through `wake`; `on_created` is told when the dispatcher stored new
        deliveries (core/webhooks/supervisor.py wakes the processes)."""
        self.pool = pool
        self.notifier = notifier
        self.on_created = on_created
        self.settings = settings
        self.clock = clock
        self.keyring = keyring
        self._wake = asyncio.Event()
        # The send loop's one timer (see _wake_by): its handle and the loop's
        # time it is armed for.
        self._wake_timer: asyncio.TimerHandle | None = None
        self._wake_timer_at = math.inf
        # Attempts sending (they count against concurrency).
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._claim_batch = max(1, settings.concurrency // 4)
        # Slots asked for by claims not yet answered: in flight and being
        # claimed together stay within concurrency.
        self._claiming = 0
        # What a claim raised beyond the errors it retries: the send loop
        # raises it (the worker is restarted by its supervisor, as when the
        # claim ran in the loop), never left in a task nobody awaits.
        self._claim_failure: BaseException | None = None
        # The last claim found fewer due than it asked for (or failed).
        self._drained = False
        # Set when run() ends: a claim answered after that starts nothing (its
        # leases run out and the deliveries are sent again, at least once).
        self._stopped = False
        self._endpoints = _Endpoints(settings)
        self._recorder = _Recorder(pool)
        self._claimer = _Claimer(pool, clock, self.lease_s(), self._claimed)

    async def run(self) -> None:
        """Dispatches (with a notifier) and sends, until cancelled; attempts in
        flight then are cancelled and their leases lapse (at least once)."""
        dispatcher = (
            asyncio.create_task(self._dispatch(), name="webhooks dispatch")
            if self.notifier is not None
            else None
        )
        try:
            await self._send_loop()
        finally:
            # No attempt starts from here on: a claim answered while the tasks
            # below are awaited would have started attempts nobody cancels, on
            # sessions made after _endpoints.close(). The claimer goes first.
            self._stopped = True
            if self._wake_timer is not None:
                self._wake_timer.cancel()
                self._wake_timer, self._wake_timer_at = None, math.inf
            if dispatcher is not None:
                dispatcher.cancel()
            await self._claimer.close()
            tasks = [
                *([dispatcher] if dispatcher is not None else []),
                *self._in_flight,
            ]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._recorder.close()
            await self._endpoints.close()

    def lease_s(self) -> float:
        """How long a claimed delivery stays ours: its attempt may first wait
        for its endpoint's slots, each held at most timeout_s, behind at most
        `concurrency` others claimed by this worker."""
        settings = self.settings
        rounds = math.ceil(settings.concurrency / settings.endpoint_concurrency)
        return settings.timeout_s * rounds + settings.lease_grace_s

    def wake(self) -> None:
        """New deliveries may be due: claim now rather than at the next poll."""
        self._wake.set()

    async def run_dispatcher(self) -> None:
        """Only the dispatcher: the core's part when delivery processes send."""
        await self._dispatch()

    async def _dispatch(self) -> None:
        notifier = self.notifier
        assert notifier is not None, "only a worker with a notifier dispatches"
        unanalyzed = 0  # deliveries created since the statistics were refreshed
        analyzed_at = -math.inf
        analyzing: asyncio.Task[None] | None = None
        batch = FIRST_BATCH
        try:
            while True:
                generation = notifier.generation
                try:
                    consumed, created = await dispatch_once(
                        self.pool, self.clock(), self.settings.policy.give_up_after_s, batch
                    )
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("webhook dispatch failed; retrying", extra={"error": str(exc)})
                    await asyncio.sleep(self.settings.poll_interval_s)
                    continue
                if created:
                    self._wake.set()
                    if self.on_created is not None:
                        self.on_created()
                unanalyzed += created
                if (
                    unanalyzed >= ANALYZE_AFTER
                    and time.monotonic() - analyzed_at >= ANALYZE_EVERY_S
                    and (analyzing is None or analyzing.done())
                ):
                    # Beside the dispatch and the claims, which it must not hold up.
                    analyzing = asyncio.create_task(self._analyze(), name="webhooks analyze")
                    unanalyzed, analyzed_at = 0, time.monotonic()
                if consumed < batch:  # caught up: wait for the next events
                    await notifier.wait(generation)
                batch = next_batch(batch, consumed)
        finally:
            if analyzing is not None and not analyzing.done():
                analyzing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await analyzing

    async def _analyze(self) -> None:
        try:
            await refresh_statistics(self.pool)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("webhook statistics not refreshed", extra={"error": str(exc)})

    async def _send_loop(self) -> None:
        concurrency = self.settings.concurrency
        while True:
            if self._claim_failure is not None:
                raise self._claim_failure
            self._wake.clear()
            # Claim no more than can be sent at once, and (under load) only
            # once a quarter of the slots are free: a claim scans the pending
            # deliveries, so one per finished attempt would cost O(pending) each.
            # A claim runs beside the sends, on the claimer's connection:
            # awaited here, every slot freed during its round trip stayed
            # idle until it returned (under load the sends were faster than
            # the claims).
            free = concurrency - len(self._in_flight) - self._claiming
            busy = bool(self._in_flight) or self._claiming > 0
            if free and (free >= self._claim_batch if busy else not self._drained):
                self._claiming += free
                self._claimer.claim(free)
                busy = True
            if self._endpoints.check_due():
                await self._endpoints.close_idle(set(self._in_flight.values()))
            # While attempts or claims are in flight their ends wake us: no
            # need to ask the database when the next delivery falls due.
            drained = self._drained and not busy
            idle_s = self.settings.poll_interval_s if busy else await self._idle_s()
            self._wake_by(idle_s)
            await self._wake.wait()
            if drained:
                self._drained = False  # woken or due: look again

    def _wake_by(self, idle_s: float) -> None:
        """The send loop is woken within `idle_s` at the latest, by one timer
        kept across turns: armed again only when it would fire later than
        that, never cancelled for a wake that came first. A timer set earlier
        for a shorter wait wakes the loop early, once: a turn that finds
        nothing new and waits again, as any wake. Under load the loop turns at
        every attempt's end, and asyncio.timeout around each wait made a Timeout,
        a timer of the loop (a libuv handle) and its cancel every turn: a turn
        woken by another task, uvloop, 30,000 a run, four alternations in one
        process, thread CPU: 6.8-9.3 -> 3.0-3.3 us."""
        loop = asyncio.get_running_loop()
        at = loop.time() + idle_s
        if at < self._wake_timer_at:
            if self._wake_timer is not None:
                self._wake_timer.cancel()
            self._wake_timer = loop.call_at(at, self._on_wake_timer)
            self._wake_timer_at = at

    def _on_wake_timer(self) -> None:
        self._wake_timer, self._wake_timer_at = None, math.inf
        self._wake.set()

    def _claimed(self, result: ClaimResult, free: int, now: datetime) -> None:
        """Starts the attempts of a claim of up to `free` deliveries made at `now`."""
        claimed: list[Claimed] = []
        try:
            if isinstance(result, Exception):
                raise result
            claimed = claimed_of(result, now, self.keyring)
        except (asyncpg.PostgresError, OSError, SealError) as exc:
            # A SealError names the endpoint and KEK, never the secret.
            log.warning("webhook claim failed; retrying", extra={"error": str(exc)})
        except Exception as exc:
            # Beyond the errors it retries: the send loop raises it (the worker
            # is restarted by its supervisor), never left unseen while the
            # deliveries it leased wait out their lease unsent.
            self._claim_failure = exc
        finally:
            self._claiming -= free
            assert self._claiming >= 0, "every claim gives back the slots it asked for"
        assert len(claimed) <= free, "a claim takes no more than the slots it was given"
        if self._stopped:
            return  # their leases run out: sent again by whoever runs next
        for item in claimed:
            task = asyncio.create_task(self._attempt(item))
            self._in_flight[task] = item.endpoint_id  # until _attempt's finally
        # All it asked for: more may be due, look again now. Fewer: nothing
        # more is due; the attempts' ends wake the loop, or, with nothing in
        # flight, it waits until the next delivery falls due.
        self._drained = len(claimed) < free
        if (
            self._claim_failure is not None
            or not self._drained
            or not (self._in_flight or self._claiming)
        ):
            self._wake.set()

    async def _idle_s(self) -> float:
        """Until the next delivery falls due, at most poll_interval_s."""
        try:
            async with self.pool.acquire() as conn:
                due = await conn.fetchval(NEXT_DUE_SQL)
        except (asyncpg.PostgresError, OSError):
            return self.settings.poll_interval_s
        if due is None:
            return self.settings.poll_interval_s
        wait_s = (due - self.clock()).total_seconds()
        # Due but not claimed: leased (its lease_time), or held behind an earlier
        # event in flight; an end of ours wakes us, another's within the poll.
        if wait_s <= 0:
            return self.settings.poll_interval_s
        return float(min(self.settings.poll_interval_s, wait_s))

    async def _attempt(self, claimed: Claimed) -> None:
        task = asyncio.current_task()
        assert task is not None, "an attempt runs in its own task (_claimed)"
        try:
            session, slots = self._endpoints.get(claimed.endpoint_id)
            async with slots:
                started = self.clock()
                t0 = time.monotonic()
                try:
                    outcome = await self.send(session, claimed, started)
                except Exception as exc:
                    # Whatever went wrong sending is a failed attempt, recorded and
                    # retried on the schedule, never an attempt that vanishes.
                    log.exception(
                        "webhook attempt raised", extra={"delivery": str(claimed.delivery_id)}
                    )
                    outcome = retry.Outcome(None, f"internal error sending ({type(exc).__name__})")
                duration_ms = int((time.monotonic() - t0) * 1000)
            now = self.clock()
            decision = retry.decide(
                self.settings.policy,
                claimed.attempt,
                outcome,
                now,
                claimed.give_up_time,
                random.random(),
            )
            # The send is over: its slot is free for the next claim while the
            # record joins the next batch (the lease keeps the delivery from
            # being claimed again, and its resource's next event waits for the
            # record to leave 'pending'). The recorder logs and counts it once
            # recorded; the task ends here (no task or future per attempt
            # waits for the record).
            self._recorder.add(Attempted(claimed, started, duration_ms, outcome, decision, now))
        except Exception as exc:
            # The lease runs out and the attempt is made again.
            log.warning("webhook attempt not recorded", extra={"error": type(exc).__name__})
        finally:
            # Out of the attempts in flight however it ended (cancelled too),
            # here rather than by a done callback per task (its registration
            # and a callback the loop schedules at the task's end): tasks of
            # one step each, uvloop, 20,000 a run, four alternations in one
            # process, thread CPU: 3.8-4.2 -> 3.2-3.5 us a task. A task
            # cancelled before its first step stays listed: only run()'s end
            # cancels attempts, and nothing reads the list after it.
            self._in_flight.pop(task, None)
            self._wake.set()

    async def send(self, session: DeliveryClient, claimed: Claimed, now: datetime) -> retry.Outcome:
        problem = _url_problem(claimed.url, self.settings.allow_private_targets)
        if problem is not None:
            return retry.Outcome(400, f"not sent: the URL {problem}")
        try:
            where = target(claimed.url, FIXED_HEADERS)
            head = request_head(where.head_start, headers(claimed, now), len(claimed.body))
        except ValueError as exc:  # never for a URL url_problem passed, nor Kassa's fields
            return retry.Outcome(None, f"not sent: {exc}")
        try:
            # The hard timeout, connecting included (a timer of the loop: see post).
            response = await session.post(where, head, claimed.body, self.settings.timeout_s)
        except TimeoutError:
            return retry.Outcome(None, f"timeout after {self.settings.timeout_s:g} s")
        except (HttpClientError, OSError) as exc:
            return retry.Outcome(None, f"{type(exc).__name__}: {exc}")
        # Redirects are not followed: a 3xx is a failed attempt like any non-2xx.
        status = response.status
        ok = 200 <= status < 300
        retry_after = response.retry_after
        return retry.Outcome(
            status,
            "" if ok else f"HTTP {status} {response.reason}".strip(),
            # The clock read only for a Retry-After (a third read per attempt).
            None if retry_after is None else retry.parse_retry_after(retry_after, self.clock()),
        )
