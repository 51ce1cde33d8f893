"""Events benchmark, same run, same machine:

(a) events/s through StreamEvents (real core process, PostgreSQL outbox) to
    one consumer, vs a gRPC server stream of equal-size messages without the
    database (a separate process, same client code);
(b) webhook deliveries/s from the core to a local receiver (stored, claimed,
    signed, sent, recorded), vs raw HTTP POSTs of the same requests (a
    delivery's body size and headers; the events' test data built before the
    clock) to the same receiver and concurrency from one process, made twice:
    with aiohttp and with the deliveries' own client
    (core/webhooks/delivery_http.py, "lean"). The ratio's baseline is the
    higher of the two rates: the machine's raw limit, not one client
    library's. With delivery processes
    (`--delivery-processes N`, default the setting's), the raw POSTs run
    again from N + 1 processes, as many as the core then uses, printed as
    a second figure so the comparison can be judged; the core's CPU is
    its own process's plus its delivery processes'.

Under a shared, busy machine a rate measured once drifts with the load, so
each side runs ROUNDS times, each round right after or before its baseline;
the ratio reported is the median of the rounds' ratios (a round in which one
side alone caught a quiet moment moves it least), and the best rate of
each side is printed too, as is every round. Beside each rate, the CPU seconds
per item of the process that serves it (the core; the baseline server; the
process sending the raw POSTs) from /proc: a figure the load changes far
less than the wall-clock rate.

Run from the repo root: .venv/bin/python -m tests.bench.bench_events
(scripts/bench events; `--webhooks-only` runs part (b) alone). Last line: JSON. `--profile DIR` runs the core under
cProfile, timed by its main thread's CPU, and writes DIR/core.prof (and
prints its top functions) at the end. `--pg-statements` loads
pg_stat_statements into the bench's cluster and prints, after the rounds,
its statements by total execution time (per delivery of all rounds).
Every round prints how many updates of webhook_deliveries were HOT (no new
index entries) per delivery, the WAL written per delivery (with
`--pg-statements` by relation, pg_walinspect), and a same-run durable floor
(floor_round): the raw POSTs plus the least database work an at-least-once
delivery needs, by hand, in Kassa's batch sizes, on a clock that, as Kassa's
round's, starts before the round's events are written (the same events, the
same transactions, into an outbox of the floors' own with the same indexes;
a delivery is inserted once its event is committed), with its PostgreSQL CPU and
WAL per delivery; JSON keys webhook_floor_* (the ratio's baseline stays the
raw POSTs). A second floor, the promises' floor (PROMISES_FLOOR), runs the
same loop on the rows and indexes that what Kassa promises needs (one
delivery per endpoint and event, due order, each resource's order, a record
of every attempt, each request's body rendered from its event and signed with
its endpoint's secret) and nothing else: JSON keys webhook_floor_promises_*.
`--history N` stores N finished deliveries (random ids, as an install's past)
before the rounds and runs a CHECKPOINT before each round, as production's
checkpoint_timeout does: the first change of each index page after it writes
the whole page into the WAL, which a run on a young table never shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for extra in ("", "gen", "scripts"):
    sys.path.insert(0, str(ROOT / extra))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import grpc  # noqa: E402
from aiohttp import web  # noqa: E402

from core.clients import ApiTls, api_aio_channel  # noqa: E402
from core.events import outbox  # noqa: E402
from core.events.outbox import NewEvent, append  # noqa: E402
from core.render import events as resources  # noqa: E402
from core.webhooks.delivery_http import (  # noqa: E402
    DeliveryClient,
    Target,
    request_head,
    target,
)
from core.webhooks.settings import WebhookSettings  # noqa: E402
from core.webhooks.worker import FIXED_HEADERS, Claimed  # noqa: E402
from core.webhooks.worker import headers as delivery_headers  # noqa: E402
from kassa.core.v1 import (  # noqa: E402
    event_pb2,
    event_pb2_grpc,
    invoice_pb2,
    webhook_pb2,
    webhook_pb2_grpc,
)
from localstack.ports import free_port, wait_for_port  # noqa: E402
from localstack.postgres import PostgresCluster  # noqa: E402
from localstack.stack import CoreSetup  # noqa: E402
from tests.support.proc_cpu import TICK_S, cluster_cpu_s, cpu_s, stat  # noqa: E402

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
STREAM_EVENTS = 20_000
WEBHOOK_EVENTS = 3_000
CONCURRENCY = 32
MERCHANT = "bench"
ROUNDS = 3


def invoice(i: int) -> invoice_pb2.Invoice:
    """A realistic snapshot: what the state machine writes for a fresh invoice."""
    return invoice_pb2.Invoice(
        name=f"merchants/{MERCHANT}/invoices/inv{i:012d}",
        merchant_order_id=f"order-{i}",
        asset=TOKEN,
        network="eip155:31337",
        amount_due="25000000",
        deposit_address="0x" + f"{i:040x}",
        confirmations_required=3,
        state=invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT,
        price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
        metadata={"cart": "c-1234", "customer": "cust-5678"},
    )


def event_batches(start: int, n: int) -> list[list[NewEvent]]:
    """The events of invoices start .. start + n - 1, 1,000 to a transaction.
    Built before a round's clock starts: making the test data (~10 us of the
    bench's Python an event, the protobuf built and serialized) is not the
    delivery's work, and inside the round it took CPU from the deliveries on
    a two-core machine, which the raw POSTs never paid."""
    return [
        [
            NewEvent(
                "invoice.created",
                MERCHANT,
                invoice(i).name,
                invoice(i).SerializeToString(deterministic=True),
            )
            for i in range(chunk, min(chunk + 1000, start + n))
        ]
        for chunk in range(start, start + n, 1000)
    ]


# Each floor's own outbox: the same columns and indexes as Kassa's (events),
# and a sequence row as event_sequence, so that a floor's round writes the same
# events in the same transactions as Kassa's round, on its clock, as a business
# does before any delivery; apart, so that Kassa's dispatcher never reads them.
FLOOR_EVENT_SEQUENCE = (
    """CREATE TABLE IF NOT EXISTS bench_floor_event_sequence (
        id integer PRIMARY KEY, last bigint NOT NULL)""",
    "INSERT INTO bench_floor_event_sequence VALUES (1, 0) ON CONFLICT DO NOTHING",
)


def floor_events_table(name: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {name} (LIKE events INCLUDING ALL)"


async def append_floor_events(
    conn: asyncpg.Connection, table: str, first: int, events: list[NewEvent]
) -> None:
    """core.events.outbox.append's statements on a floor's outbox (no NOTIFY:
    nothing listens to it). The sequence row is taken as the outbox takes it,
    but the events' sequences are `first` on: the ids of the floor's
    deliveries, which are made from them, not read from the events."""
    await conn.execute(
        "UPDATE bench_floor_event_sequence SET last = last + $1 WHERE id = 1", len(events)
    )
    await conn.copy_records_to_table(
        table, records=outbox.rows(first, events), columns=outbox.COLUMNS
    )


async def write_events(dsn: str, batches: list[list[NewEvent]]) -> None:
    """Appends each batch to the outbox in a transaction of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        for batch in batches:
            async with conn.transaction():
                await append(conn, batch)
    finally:
        await conn.close()


# --- (a) StreamEvents vs a database-free server stream ---------------------


class _Baseline(event_pb2_grpc.EventServiceServicer):
    def __init__(self, message: event_pb2.StreamEventsResponse, count: int) -> None:
        self.message = message
        self.count = count

    async def StreamEvents(self, request, context):  # type: ignore[no-untyped-def]
        for _ in range(self.count):
            yield self.message


def _serve_baseline(port: int, payload: bytes, count: int, certs: Path) -> None:
    """The same TLS as the core's API (its certificate), so only the database differs."""

    async def run() -> None:
        server = grpc.aio.server()
        message = event_pb2.StreamEventsResponse.FromString(payload)
        event_pb2_grpc.add_EventServiceServicer_to_server(_Baseline(message, count), server)
        credentials = grpc.ssl_server_credentials(
            [((certs / "core-api.key").read_bytes(), (certs / "core-api.pem").read_bytes())]
        )
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


async def consume(target: str, token: str | None, count: int, tls: ApiTls) -> tuple[float, int]:
    """(events/s, bytes of the last message) reading `count` events from 0."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with api_aio_channel(target, tls) as channel:
        stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
            event_pb2.StreamEventsRequest(parent=f"merchants/{MERCHANT}", after_sequence=0),
            metadata=metadata,
        )
        begin = time.perf_counter()
        n, size = 0, 0
        async for response in stream:
            n += 1
            if n == count:
                size = response.ByteSize()
                break
        elapsed = time.perf_counter() - begin
        stream.cancel()
    return count / elapsed, size


# --- (b) webhook deliveries vs raw POSTs -----------------------------------


def _serve_receiver(port: int, received: Synchronized) -> None:  # type: ignore[type-arg]
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        received.value += 1  # one writer: this process's one loop
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _delivery_headers() -> dict[str, str]:
    """The headers a delivery of the bench's event sends (worker.headers: the
    same names, values of the same lengths), for the raw POSTs and the floor,
    so that the baseline sends the same requests. The raw POSTs sent two of
    the six; measured, that made no difference beyond the noise (five
    alternations of 5,000 POSTs, 2026-12-01: the receiver 66-94 against
    60-88 us a POST, the client 97-138 against 85-130)."""
    claimed = Claimed(
        delivery_id=uuid.uuid4(),
        attempt=1,
        give_up_time=datetime.now(UTC),
        url="http://127.0.0.1/hook",
        signing_secrets=["whsec_" + "0" * 32],
        event_id=str(uuid.uuid4()),
        event_type="invoice.created",
        body=b"{}",
    )
    return delivery_headers(claimed, datetime.now(UTC))


# The fields every delivery sends first (Content-Type, User-Agent), then its own.
DELIVERY_FIXED = FIXED_HEADERS
DELIVERY_FIELDS = _delivery_headers()
DELIVERY_HEADERS = {**dict(DELIVERY_FIXED), **DELIVERY_FIELDS}


async def raw_window(
    url: str, body: bytes, count: int, concurrency: int = CONCURRENCY
) -> tuple[float, float]:
    """(begin, end) on the monotonic clock (one clock for every process) of
    `count` POSTs, `concurrency` at once."""
    headers = DELIVERY_HEADERS
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.content.read(4096)
                    assert response.status == 200

        begin = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return begin, time.monotonic()


async def raw_posts(url: str, body: bytes, count: int) -> float:
    begin, end = await raw_window(url, body, count)
    return count / (end - begin)


async def lean_posts(url: str, body: bytes, count: int, concurrency: int = CONCURRENCY) -> float:
    """POSTs/s of raw_window's POSTs (same headers, concurrency and loop) made
    with the deliveries' client instead of aiohttp: the second raw baseline."""
    where = target(url, DELIVERY_FIXED)
    fields = DELIVERY_FIELDS
    async with DeliveryClient(True, concurrency) as client:
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                head = request_head(where.head_start, fields, len(body))
                response = await client.post(where, head, body)
                assert response.status == 200

        begin = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.monotonic() - begin)


def _raw_sender(conn: Connection, url: str, body: bytes, concurrency: int) -> None:
    """A process sending raw POSTs on request: n in, (begin, end) out; 0 ends it."""
    while n := conn.recv():
        conn.send(asyncio.run(raw_window(url, body, n, concurrency)))


def raw_posts_parallel(senders: list[Connection], count: int) -> float:
    """POSTs/s of `count` raw POSTs split among the sender processes, from the
    first one's start to the last one's end."""
    for i, conn in enumerate(senders):
        conn.send(count // len(senders) + (1 if i < count % len(senders) else 0))
    windows: list[tuple[float, float]] = [conn.recv() for conn in senders]
    return count / (max(e for _, e in windows) - min(b for b, _ in windows))


async def deliveries_updates(dsn: str) -> tuple[int, int]:
    """(updates, HOT updates) of webhook_deliveries so far: a HOT update
    writes no index entry (the statistics lag by up to a second; the
    bench reads them after each round's last delivery, so a few trail)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        row = await conn.fetchrow(
            """SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
                WHERE relname = 'webhook_deliveries'"""
        )
        return (int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])) if row else (0, 0)
    finally:
        await conn.close()


async def print_statements(dsn: str, per: int) -> None:
    """pg_stat_statements' top statements by total execution time, per `per` deliveries."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT calls, total_exec_time, rows, query FROM pg_stat_statements
                WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                ORDER BY total_exec_time DESC LIMIT 15"""
        )
    finally:
        await conn.close()
    print(f"pg_stat_statements (execution time per delivery of {per}):")
    for r in rows:
        query = " ".join(r["query"].split())[:150]
        print(
            f"  {r['total_exec_time'] * 1000 / per:7.1f} us  {r['calls']:6d} calls "
            f"{r['total_exec_time'] / max(1, r['calls']):7.3f} ms each {r['rows']:7d} rows  {query}"
        )


async def table_state(dsn: str, statements: bool) -> dict[str, float]:
    """webhook_deliveries' dead and live row versions, its partial indexes'
    entries read, and (with pg_stat_statements) the claims' and records'
    calls and execution ms so far: whether a late round's claims cost more,
    and whether dead versions and index entries grow with it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        row = await conn.fetchrow(
            """SELECT n_dead_tup, n_live_tup, autovacuum_count, vacuum_count,
                      autoanalyze_count, analyze_count,
                      (SELECT idx_tup_read FROM pg_stat_user_indexes
                        WHERE indexrelname = 'webhook_deliveries_due') AS due_read,
                      (SELECT idx_tup_read FROM pg_stat_user_indexes
                        WHERE indexrelname = 'webhook_deliveries_order') AS order_read,
                      pg_relation_size('webhook_deliveries_due') / 8192 AS due_pages
                 FROM pg_stat_user_tables WHERE relname = 'webhook_deliveries'"""
        )
        found = {k: float(v or 0) for k, v in row.items()} if row else {}
        if statements:
            for name, prefix in (("claim", "WITH due AS%"), ("record", "WITH attempts AS%")):
                calls, ms = await conn.fetchrow(
                    """SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0)
                         FROM pg_stat_statements WHERE query LIKE $1""",
                    prefix,
                )
                found[f"{name}_calls"], found[f"{name}_ms"] = float(calls), float(ms)
        return found
    finally:
        await conn.close()


def print_table_state(before: dict[str, float], after: dict[str, float]) -> None:
    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    line = (
        f"    webhook_deliveries: {after['n_dead_tup']:.0f} dead / {after['n_live_tup']:.0f} "
        f"live versions after the round, (auto)vacuums {d('autovacuum_count') + d('vacuum_count'):.0f}, "
        f"analyzes {d('analyze_count'):.0f}, autoanalyzes {d('autoanalyze_count'):.0f}; "
        f"entries read per delivery: due index {d('due_read') / WEBHOOK_EVENTS:.1f}, "
        f"order index {d('order_read') / WEBHOOK_EVENTS:.1f}; due index {after['due_pages']:.0f} pages"
    )
    for name in ("claim", "record"):
        calls = d(f"{name}_calls")
        if calls:
            line += (
                f"; {name}s {calls:.0f} x {d(f'{name}_ms') / calls:.3f} ms "
                f"({d(f'{name}_ms') * 1000 / WEBHOOK_EVENTS:.1f} us per delivery)"
            )
    print(line)


async def commits(dsn: str) -> int:
    """Transactions committed in the bench's database so far (each statement
    outside a transaction is one): their count per delivery is the database
    round trips' share, which the load does not change."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await conn.close()


async def wal_state(dsn: str) -> tuple[int, int, int]:
    """(WAL bytes written so far, WAL records, full-page images) of the
    cluster: pg_current_wal_lsn() is exact; pg_stat_wal's counts lag by up
    to a second (backends flush their statistics at most once a second)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        row = await conn.fetchrow(
            """SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS lsn,
                      wal_records, wal_fpi FROM pg_stat_wal"""
        )
        return int(row["lsn"]), int(row["wal_records"]), int(row["wal_fpi"])
    finally:
        await conn.close()


async def wal_by_relation(dsn: str, start: int, end: int, per: int) -> str:
    """WAL bytes per delivery between two LSNs by the relation of each record's
    first block (pg_walinspect; "other": commits and records without one).
    pg_walinspect reads only flushed WAL, and `end` (pg_current_wal_lsn) may
    be ahead of it after asynchronous commits: waited for (the WAL writer
    flushes within wal_writer_delay)."""
    conn = await asyncpg.connect(dsn)
    try:
        flushed = "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint"
        while await conn.fetchval(flushed) < end:  # noqa: ASYNC110 (the server's state, polled)
            await asyncio.sleep(0.02)
        rows = await conn.fetch(
            """SELECT coalesce(c.relname, w.rel, 'other') AS rel, sum(w.record_length) AS bytes,
                      sum(w.fpi_length) AS fpi, count(*) AS records
                 FROM (SELECT record_length, fpi_length,
                              substring(block_ref from 'rel [0-9]+/[0-9]+/([0-9]+)') AS rel
                         FROM pg_get_wal_records_info(
                                (to_hex($1::bigint >> 32) || '/' || to_hex($1::bigint & 4294967295))::pg_lsn,
                                (to_hex($2::bigint >> 32) || '/' || to_hex($2::bigint & 4294967295))::pg_lsn)) w
                 LEFT JOIN pg_class c ON c.relfilenode::text = w.rel
                GROUP BY 1 ORDER BY 2 DESC LIMIT 8""",
            start,
            end,
        )
    finally:
        await conn.close()
    return ", ".join(
        f"{r['rel']} {int(r['bytes']) / per:,.0f} B ({int(r['records']) / per:.1f} records"
        + (f", FPI {int(r['fpi']) / per:,.0f} B" if r["fpi"] else "")
        + ")"
        for r in rows
    )


async def add_history(dsn: str, n: int) -> None:
    """`n` finished deliveries (each with its attempt) of `n` earlier events, to
    a disabled endpoint of the bench's merchant: a table with a past, as in
    production, where a new row's index entry lands on a page of a large index
    (random ids: a random one). Ids random, as those of an install's past."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            last = await conn.fetchval("SELECT last FROM event_sequence WHERE id = 1 FOR UPDATE")
            await conn.execute(
                """INSERT INTO events (sequence, id, type, merchant_id, resource_name, payload)
                   SELECT $1 + k, gen_random_uuid(), 'invoice.created', $2,
                          'merchants/' || $2 || '/invoices/h' || k, '\\x00'
                     FROM generate_series(1, $3::bigint) AS k""",
                last,
                MERCHANT,
                n,
            )
            await conn.execute("UPDATE event_sequence SET last = $1 WHERE id = 1", last + n)
            # Nothing to dispatch in the past (no endpoint receives it).
            await conn.execute(
                "UPDATE webhook_dispatch_cursor SET last_sequence = $1 WHERE id = 1", last + n
            )
            await conn.execute(
                """INSERT INTO webhook_endpoints
                     (id, merchant_id, url, secret, after_sequence, disabled)
                   VALUES ('history', $1, 'http://127.0.0.1:9/old', 'old', 0, true)""",
                MERCHANT,
            )
            await conn.execute(
                """INSERT INTO webhook_deliveries
                     (id, endpoint_id, merchant_id, event_sequence, event_id, event_type,
                      resource_name, status, attempt_count, next_attempt_time, give_up_time,
                      create_time, update_time)
                   SELECT gen_random_uuid(), 'history', merchant_id, sequence, id, type,
                          resource_name, 'succeeded', 1, create_time, create_time,
                          create_time, create_time
                     FROM events WHERE sequence > $1""",
                last,
            )
            await conn.execute(
                """INSERT INTO webhook_attempts_archive
                     (delivery_id, attempt, attempt_time, status_code, duration_ms)
                   SELECT id, 1, create_time, 200, 3 FROM webhook_deliveries
                    WHERE endpoint_id = 'history'"""
            )
        await conn.execute("VACUUM ANALYZE webhook_deliveries")
        await conn.execute("VACUUM ANALYZE webhook_attempts_archive")
        await conn.execute("VACUUM ANALYZE events")
    finally:
        await conn.close()


# The durable floor: the least database work an at-least-once delivery needs,
# by hand, around the same raw POSTs, in the batches Kassa's worker makes:
# the rows inserted before anything is sent (FIRST_BATCH, then BATCH per
# transaction, as the dispatcher), each marked attempted before its send (a
# claim of the free slots once a quarter of them are free, committed
# asynchronously as the claimer's), and its outcome recorded durably (the
# attempts that finished while the previous record ran, one statement, a
# synchronous commit). One table, its primary key only: no attempts table,
# no ordering, no foreign keys, no due index (the claimer follows the ids).
FLOOR_TABLE = """CREATE TABLE IF NOT EXISTS bench_floor_deliveries (
    id bigint PRIMARY KEY,
    attempt_count integer NOT NULL DEFAULT 0,
    status_code integer)"""


@dataclass(frozen=True)
class FloorRequest:
    """What a floor sends when it sends the same request every time."""

    where: Target
    head: bytes
    body: bytes


# A claimed delivery's id, its request's head and its body.
FloorRequests = list[tuple[int, bytes, bytes]]


@dataclass(frozen=True)
class FloorSchema:
    """The database side of a floor: `insert` ($1 the first id, $2 the last),
    `claim` (marks up to n rows attempted after id `after`, returns which,
    with their requests: `fixed`'s, or its own), `record` ($1 ids, $2 status
    codes), `done` ($1 first, $2 last: how many rows were answered 200 at
    their first attempt). `events` is its outbox's table, made as `events`
    is (delivery i's event has sequence i). `name` is its JSON keys' part (webhook_<name>_per_s, …),
    `label` its line's."""

    name: str
    label: str
    tables: tuple[str, ...]
    events: str
    insert: str
    claim: Callable[[asyncpg.Connection, int, int, FloorRequest], Awaitable[FloorRequests]]
    record: str
    done: str
    # Run once the first batch is in (Kassa's dispatcher refreshes the claim's
    # statistics after a burst: without, the claim is planned as if nothing
    # were pending; measured here, 197-360 against 93-133 us of PostgreSQL a
    # delivery).
    after_burst: str | None = None
    # Run after the round's clock, its CPU and WAL counted as the floor's: the
    # dead row versions the floor left are its cost, and left to autovacuum
    # they were cleaned during Kassa's next round, on Kassa's account.
    cleanup: str | None = None


async def _claim_the_next_ids(
    conn: asyncpg.Connection, after: int, n: int, fixed: FloorRequest
) -> FloorRequests:
    """The bare floor's claim: the next ids (its one claimer follows them),
    each sent as the same request."""
    await conn.execute(
        "UPDATE bench_floor_deliveries SET attempt_count = attempt_count + 1 "
        "WHERE id > $1 AND id <= $2",
        after,
        after + n,
    )
    return [(i, fixed.head, fixed.body) for i in range(after + 1, after + n + 1)]


BARE_FLOOR = FloorSchema(
    "floor",
    "durable floor (the raw POSTs + insert, mark attempted, record, by hand on a "
    "one-index table, Kassa's batches)",
    (FLOOR_TABLE,),
    "bench_floor_events",
    "INSERT INTO bench_floor_deliveries (id) SELECT generate_series($1::bigint, $2::bigint)",
    _claim_the_next_ids,
    """UPDATE bench_floor_deliveries f SET status_code = u.status_code
         FROM unnest($1::bigint[], $2::integer[]) AS u(id, status_code)
        WHERE f.id = u.id""",
    """SELECT count(*) FROM bench_floor_deliveries
        WHERE id > $1 AND id <= $2 AND status_code = 200 AND attempt_count = 1""",
    cleanup="VACUUM bench_floor_deliveries",
)


# The promises' floor: the same loop on the rows and indexes that what Kassa
# promises its users needs, each with its reader, and nothing else: a
# delivery once per endpoint and event (the unique key), listed
# by merchant newest first (the same key), due retries found in due order
# (the partial due index), each resource's events in sequence order (the
# partial ordering index, probed per candidate), an attempt's record kept for
# the API (the latest attempt in its delivery's row, as Kassa keeps it since
# migration 0029; the ones before it go to an archive, which no round writes:
# every first attempt succeeds), a lease a crash
# runs out (a column no index covers: the claim is HOT). The insert is plain,
# as the dispatcher's (the unique index refuses a second delivery; ON
# CONFLICT only when a batch meets one). Each request as Kassa's: the claim
# joins its endpoint (its secret) and its event, the body is the event rendered
# (core.render.events.row_json), the head carries the signature over it
# (core.webhooks.worker.headers). Not in it: Kassa's foreign keys (integrity
# against its own bugs, measured separately), the outbox's reader (the rows are
# made, not joined from events; the events are written, as in Kassa's round:
# floor_round), the secret's unsealing, the URL's check, the log line, metrics.
PROMISES_TABLES = (
    """CREATE TABLE IF NOT EXISTS bench_floor2_deliveries (
        id bigint PRIMARY KEY,
        merchant_id text NOT NULL,
        endpoint_id text NOT NULL,
        event_sequence bigint NOT NULL,
        resource_name text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        attempt_count integer NOT NULL DEFAULT 0,
        next_attempt_time timestamptz NOT NULL DEFAULT now(),
        lease_time timestamptz,
        last_status_code integer) WITH (fillfactor = 70)""",
    """CREATE TABLE IF NOT EXISTS bench_floor2_endpoints (
        id text PRIMARY KEY, secret text NOT NULL)""",
    "INSERT INTO bench_floor2_endpoints VALUES ('ep', 'whsec_floor') ON CONFLICT DO NOTHING",
    """CREATE UNIQUE INDEX IF NOT EXISTS bench_floor2_by_merchant
        ON bench_floor2_deliveries (merchant_id, event_sequence, endpoint_id)""",
    """CREATE INDEX IF NOT EXISTS bench_floor2_due ON bench_floor2_deliveries (next_attempt_time)
        WHERE status = 'pending'""",
    """CREATE INDEX IF NOT EXISTS bench_floor2_order
        ON bench_floor2_deliveries (endpoint_id, resource_name, event_sequence)
        WHERE status = 'pending'""",
)


async def _claim_due_in_order(
    conn: asyncpg.Connection, after: int, n: int, fixed: FloorRequest
) -> FloorRequests:
    """The promises' floor's claim: due rows in due order, none behind an
    earlier pending event of its resource, leased (`after` is not needed),
    each with its endpoint's secret and its event; the requests made as
    Kassa's worker makes them (`fixed` gives only where they go)."""
    del after
    rows = await conn.fetch(
        """WITH due AS (
             SELECT d.id FROM bench_floor2_deliveries d
              WHERE d.status = 'pending' AND d.next_attempt_time <= now()
                AND d.lease_time IS NULL
                AND NOT EXISTS (
                  SELECT 1 FROM bench_floor2_deliveries p
                   WHERE p.endpoint_id = d.endpoint_id AND p.resource_name = d.resource_name
                     AND p.status = 'pending' AND p.event_sequence < d.event_sequence
                   OFFSET 0)
              ORDER BY d.next_attempt_time LIMIT $1
              FOR UPDATE OF d SKIP LOCKED)
           , claimed AS (
           UPDATE bench_floor2_deliveries d
              SET attempt_count = d.attempt_count + 1, lease_time = now()
             FROM due WHERE d.id = due.id
           RETURNING d.id, d.attempt_count, d.endpoint_id, d.event_sequence)
           SELECT c.id AS delivery_id, c.attempt_count, e.secret, ev.sequence, ev.id,
                  ev.type, ev.resource_type, ev.payload, ev.create_time
             FROM claimed c
             JOIN bench_floor2_endpoints e ON e.id = c.endpoint_id
             JOIN bench_floor2_events ev ON ev.sequence = c.event_sequence""",
        n,
    )
    now = datetime.now(UTC)
    requests: FloorRequests = []
    for r in rows:
        body = resources.row_json(r)
        claimed = Claimed(
            uuid.UUID(int=r["delivery_id"]),
            r["attempt_count"],
            now,
            "",
            [r["secret"]],
            str(r["id"]),
            r["type"],
            body,
        )
        head = request_head(fixed.where.head_start, delivery_headers(claimed, now), len(body))
        requests.append((r["delivery_id"], head, body))
    return requests


PROMISES_FLOOR = FloorSchema(
    "floor_promises",
    "the promises' floor (the same loop on the rows and indexes Kassa's promises need: "
    "unique per endpoint and event, due order, each resource's order, the attempt in the row; "
    "each body rendered from its event and signed)",
    PROMISES_TABLES,
    "bench_floor2_events",
    """INSERT INTO bench_floor2_deliveries
           (id, merchant_id, endpoint_id, event_sequence, resource_name)
       SELECT g, 'bench', 'ep', g, 'merchants/bench/invoices/inv' || g
         FROM generate_series($1::bigint, $2::bigint) g""",
    _claim_due_in_order,
    """UPDATE bench_floor2_deliveries f
          SET status = CASE WHEN u.status_code = 200 THEN 'succeeded' ELSE 'pending' END,
              last_status_code = u.status_code
         FROM unnest($1::bigint[], $2::integer[]) AS u(id, status_code)
        WHERE f.id = u.id""",
    """SELECT count(*) FROM bench_floor2_deliveries d
        WHERE d.id > $1 AND d.id <= $2 AND d.status = 'succeeded' AND d.attempt_count = 1""",
    "ANALYZE bench_floor2_deliveries (status, next_attempt_time, lease_time)",
    "VACUUM bench_floor2_deliveries",
)


async def floor_round(
    dsn: str, url: str, body: bytes, first: int, count: int, schema: FloorSchema
) -> float:
    """Deliveries/s of `count` raw POSTs made durable at least once, on
    `schema`'s rows: ids first + 1 .. first + count."""
    from core.webhooks.dispatch import BATCH, FIRST_BATCH

    # The deliveries' own client (the lean raw baseline's): the floor is the
    # least work, so its POSTs cost what the cheapest raw POSTs cost.
    where = target(url, DELIVERY_FIXED)
    fixed = FloorRequest(where, request_head(where.head_start, DELIVERY_FIELDS, len(body)), body)
    # Kassa's round's events, built before the clock as Kassa's round builds them.
    batches = event_batches(STREAM_EVENTS + first, count)
    writer, inserter, claimer, recorder = [await asyncpg.connect(dsn) for _ in range(4)]
    await claimer.execute("SET synchronous_commit = off")
    last = first + count
    written = inserted = claimed = first
    wake_inserter = asyncio.Event()
    free = CONCURRENCY
    finished: list[tuple[int, int]] = []
    recorded = 0
    wake_claimer, wake_recorder = asyncio.Event(), asyncio.Event()
    sends: set[asyncio.Task[None]] = set()
    client = DeliveryClient(True, CONCURRENCY)

    async def write() -> None:
        # The events, as Kassa's round writes them: a transaction a batch.
        nonlocal written
        for batch in batches:
            async with writer.transaction():
                await append_floor_events(writer, schema.events, written + 1, batch)
            written += len(batch)
            wake_inserter.set()

    async def insert() -> None:
        # A delivery only once its event is committed, as Kassa's dispatcher
        # (its rows are made, not read from the events).
        nonlocal inserted
        size = FIRST_BATCH
        while inserted < last:
            while written == inserted:
                await wake_inserter.wait()
                wake_inserter.clear()
            upto = min(inserted + size, written)
            await inserter.execute(schema.insert, inserted + 1, upto)
            if schema.after_burst is not None and size == BATCH:
                await inserter.execute(schema.after_burst)
            inserted, size = upto, BATCH
            wake_claimer.set()

    async def send(i: int, head: bytes, body: bytes) -> None:
        nonlocal free
        response = await client.post(where, head, body)
        finished.append((i, response.status))
        free += 1
        wake_claimer.set()
        wake_recorder.set()

    async def claim() -> None:
        nonlocal claimed, free
        while claimed < last:
            await wake_claimer.wait()
            wake_claimer.clear()
            while claimed < inserted and free >= min(CONCURRENCY // 4, last - claimed):
                n = min(free, inserted - claimed)
                free -= n
                requests = await schema.claim(claimer, claimed, n, fixed)
                # One claimer: every inserted row is due.
                assert len(requests) == n, (len(requests), n)
                for i, request_head_i, body_i in requests:
                    task = asyncio.create_task(send(i, request_head_i, body_i))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
                claimed += n

    async def record() -> None:
        nonlocal recorded
        while recorded < count:
            await wake_recorder.wait()
            wake_recorder.clear()
            while finished:
                batch = finished[:]
                del finished[:]
                await recorder.execute(schema.record, [i for i, _ in batch], [s for _, s in batch])
                recorded += len(batch)

    try:
        begin = time.perf_counter()
        await asyncio.gather(write(), insert(), claim(), record())
        elapsed = time.perf_counter() - begin
        done = await recorder.fetchval(schema.done, first, last)
        assert done == count, (done, count)
        if schema.cleanup is not None:
            await recorder.execute(schema.cleanup)
        return count / elapsed
    finally:
        await client.close()
        for conn in (writer, inserter, claimer, recorder):
            await conn.close()


@dataclass
class FloorRuns:
    """A floor's figures, round by round (floor_round on `schema`)."""

    schema: FloorSchema
    rates: list[float] = field(default_factory=list)
    pg_cpus: list[float] = field(default_factory=list)
    client_cpus: list[float] = field(default_factory=list)
    wals: list[float] = field(default_factory=list)

    async def run_round(
        self, dsn: str, postmaster: int, url: str, body: bytes, r: int, by_relation: bool
    ) -> tuple[str, str | None]:
        """Runs round `r` and says what it measured: a line of the bench's
        output, and with `by_relation` (--pg-statements) its WAL by relation."""
        commits0, wal0 = await commits(dsn), await wal_state(dsn)
        cpu0, pg0 = time.process_time(), cluster_cpu_s(postmaster)
        rate = await floor_round(dsn, url, body, r * WEBHOOK_EVENTS, WEBHOOK_EVENTS, self.schema)
        self.client_cpus.append((time.process_time() - cpu0) / WEBHOOK_EVENTS)
        self.pg_cpus.append((cluster_cpu_s(postmaster) - pg0) / WEBHOOK_EVENTS)
        commits_per = (await commits(dsn) - commits0) / WEBHOOK_EVENTS
        wal1 = await wal_state(dsn)
        self.rates.append(rate)
        self.wals.append((wal1[0] - wal0[0]) / WEBHOOK_EVENTS)
        line = (
            f"    {self.schema.label}: {rate:,.0f}/s, PostgreSQL {self.pg_cpus[-1] * 1e6:.0f} us "
            f"and {commits_per:.2f} commits, client {self.client_cpus[-1] * 1e6:.0f} us CPU per "
            f"delivery (writing the events included); WAL {self.wals[-1]:,.0f} B, {(wal1[1] - wal0[1]) / WEBHOOK_EVENTS:.1f} "
            f"records, {(wal1[2] - wal0[2]) / WEBHOOK_EVENTS:.2f} full-page images"
        )
        if not by_relation:
            return line, None
        return line, await wal_by_relation(dsn, wal0[0], wal1[0], WEBHOOK_EVENTS)

    def figures(
        self, delivered_rates: list[float], baseline_rates: list[float]
    ) -> dict[str, object]:
        """Its JSON: the best rate, medians of the rounds' ratios (to the raw
        POSTs; Kassa's to it), the least CPU, the median WAL per delivery."""
        name = self.schema.name
        return {
            f"webhook_{name}_per_s": round(max(self.rates)),
            f"webhook_{name}_ratio": _median_ratio(self.rates, baseline_rates),
            f"webhook_ratio_to_{name}": _median_ratio(delivered_rates, self.rates),
            f"webhook_{name}_postgres_cpu_us_per_delivery": round(min(self.pg_cpus) * 1e6),
            f"webhook_{name}_client_cpu_us_per_delivery": round(min(self.client_cpus) * 1e6),
            f"webhook_{name}_wal_bytes_per_delivery": round(statistics.median(self.wals)),
        }


def _median_ratio(rates: list[float], baselines: list[float]) -> float:
    return round(statistics.median(a / b for a, b in zip(rates, baselines, strict=True)), 3)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (the core and its
    webhook delivery processes)."""
    total = cpu_s(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = stat(int(entry.name))
                if int(child[1]) == pid:
                    total += (int(child[11]) + int(child[12])) * TICK_S
            except OSError:
                continue  # gone meanwhile
    return total


async def deliveries(dsn: str, first: int, received: Synchronized) -> float:  # type: ignore[type-arg]
    """Deliveries/s from the moment the events commit to the last success."""
    conn = await asyncpg.connect(dsn)
    try:
        after = await conn.fetchval("SELECT coalesce(max(sequence), 0) FROM events")
        target = received.value + WEBHOOK_EVENTS
        batches = event_batches(first, WEBHOOK_EVENTS)
        begin = time.perf_counter()
        await write_events(dsn, batches)
        written_s = time.perf_counter() - begin
        last = after + WEBHOOK_EVENTS
        # Until the receiver has had every delivery, ask it (shared memory),
        # not the database: the poll below, every 20 ms for the whole round,
        # cost PostgreSQL ~36 us per delivery (pg_stat_statements, 1.07 ms a
        # time at load ~3), CPU taken from the deliveries and charged to them.
        while True:
            if received.value >= target:
                break
            await asyncio.sleep(0.002)
        while True:
            # Done when the dispatcher has passed this round's last event (its
            # deliveries are created in the transaction that moves the cursor)
            # and nothing is pending: two index probes. A count of the round's
            # succeeded rows (1.8 ms a time at load 7, every 20 ms: ~9 % of a
            # core, pg_stat_statements) was PostgreSQL CPU taken from the
            # deliveries, which the raw POSTs never paid.
            done = await conn.fetchval(
                """SELECT (SELECT last_sequence FROM webhook_dispatch_cursor WHERE id = 1) >= $1
                          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries
                                           WHERE status = 'pending')""",
                last,
            )
            if done:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - begin
        succeeded = await conn.fetchval(
            """SELECT count(*) FROM webhook_deliveries
                WHERE merchant_id = $1 AND event_sequence > $2 AND status = 'succeeded'""",
            MERCHANT,
            after,
        )
        assert succeeded == WEBHOOK_EVENTS, (succeeded, WEBHOOK_EVENTS)
        # Where the round's time went: writing the events, until the
        # deliveries exist (dispatch), until the first and last attempts.
        row = await conn.fetchrow(
            """SELECT extract(epoch FROM max(d.create_time) - min(e.create_time)) AS dispatched_s,
                      extract(epoch FROM min(a.attempt_time) - min(e.create_time)) AS first_s,
                      extract(epoch FROM max(a.attempt_time) - min(e.create_time)) AS last_s,
                      avg(a.duration_ms) AS avg_ms, max(a.duration_ms) AS max_ms
                 FROM webhook_deliveries d JOIN events e ON e.sequence = d.event_sequence
                 JOIN webhook_attempts a ON a.delivery_id = d.id
                WHERE d.event_sequence > $1""",
            after,
        )
        print(
            f"    events written in {written_s:.2f} s; from the first event's commit: "
            f"deliveries stored by {float(row['dispatched_s']):.2f} s, attempts from "
            f"{float(row['first_s']):.2f} s to {float(row['last_s']):.2f} s "
            f"(each {float(row['avg_ms']):.1f} ms mean, {row['max_ms']} ms max)"
        )
    finally:
        await conn.close()
    return WEBHOOK_EVENTS / elapsed


# Runs a console script under cProfile timed by the CPU of the thread that
# runs it (the core's event loop): on a busy machine wall time mostly
# measures waiting for a core, which the profile should not attribute.
_PROFILED_MAIN = """
import cProfile, runpy, sys, time
out, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
profiler = cProfile.Profile(time.thread_time)
try:
    profiler.runcall(runpy.run_path, script, run_name="__main__")
except SystemExit:
    pass
finally:
    profiler.dump_stats(out)
"""


def machine_idle() -> tuple[int, int]:
    """(all, idle + iowait) clock ticks of the machine's cores so far (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def print_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)


async def _execute(dsn: str, sql: str) -> None:
    """`sql` on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main_async(
    tmp: Path,
    profile: Path | None,
    delivery_processes: int | None,
    webhooks_only: bool = False,
    pg_statements: bool = False,
    history: int = 0,
) -> dict[str, object]:
    cluster = PostgresCluster(tmp / "pg")
    dsn0 = cluster.start()
    if pg_statements:
        # A library loaded at start only: set, then restart the cluster.
        await _execute(dsn0, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        cluster.stop()
        cluster.start()
    ctx = multiprocessing.get_context("spawn")
    children: list[multiprocessing.process.BaseProcess] = []
    core = None
    try:
        dsn = cluster.create_database("bench")
        if pg_statements:
            await _execute(dsn, "CREATE EXTENSION pg_stat_statements")
            await _execute(dsn, "CREATE EXTENSION pg_walinspect")
        setup = CoreSetup(
            run_dir=tmp / "core",
            dsn=dsn,
            account_xpub=XPUB,
            chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
            # No adapter runs here (API tests): invoices are taken on the unwatched chain.
            health={"invoices_need_chain": False},
            assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
            fixed_rates={"TUSD/USD": "1.00"},
            webhooks={
                "allow_private_targets": True,
                "concurrency": CONCURRENCY,
                "endpoint_concurrency": CONCURRENCY,
                "poll_interval_s": 0.2,
                **(
                    {"delivery_processes": delivery_processes}
                    if delivery_processes is not None
                    else {}
                ),
            },
        )
        processes = (
            delivery_processes
            if delivery_processes is not None
            else WebhookSettings().delivery_processes
        )
        core = setup.process()
        if profile is not None:
            out = str(profile / "core.prof")
            core.argv = [sys.executable, "-c", _PROFILED_MAIN, out, *core.argv]
        core.start()
        token = setup.merchant_token(MERCHANT, ("events:read", "webhooks:read", "webhooks:write"))
        # Webhooks only: the stream part's events are not needed, one is (its
        # message sizes the raw POSTs' body).
        await write_events(dsn, event_batches(0, 1 if webhooks_only else STREAM_EVENTS))
        if history:
            begin = time.perf_counter()
            await add_history(dsn, history)
            print(
                f"history: {history:,} finished deliveries in {time.perf_counter() - begin:.1f} s"
            )
        print(f"load average before: {load_average()}")

        # (a) StreamEvents and the database-free stream, interleaved.
        async with api_aio_channel(setup.target, setup.api_tls()) as channel:
            sample = await anext(
                aiter(
                    event_pb2_grpc.EventServiceStub(channel).StreamEvents(
                        event_pb2.StreamEventsRequest(
                            parent=f"merchants/{MERCHANT}",
                            after_sequence=0 if webhooks_only else STREAM_EVENTS - 1,
                        ),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
                )
            )
        baseline_port = free_port()
        child: multiprocessing.process.BaseProcess = ctx.Process(
            target=_serve_baseline,
            args=(baseline_port, sample.SerializeToString(), STREAM_EVENTS, setup.certs),
            daemon=True,
        )
        child.start()
        children.append(child)
        wait_for_port(baseline_port)
        assert child.pid is not None
        stream_rates: list[float] = []
        baseline_rates: list[float] = []
        stream_cpu: list[float] = []
        baseline_cpu: list[float] = []
        for r in range(0 if webhooks_only else ROUNDS):
            cpu0 = cpu_s(core.pid)
            rate, size = await consume(setup.target, token, STREAM_EVENTS, setup.api_tls())
            stream_cpu.append((cpu_s(core.pid) - cpu0) / STREAM_EVENTS)
            stream_rates.append(rate)
            cpu0 = cpu_s(child.pid)
            rate, _ = await consume(
                f"127.0.0.1:{baseline_port}", None, STREAM_EVENTS, setup.api_tls()
            )
            baseline_cpu.append((cpu_s(child.pid) - cpu0) / STREAM_EVENTS)
            baseline_rates.append(rate)
            print(
                f"(a) round {r + 1}: StreamEvents {stream_rates[-1]:,.0f} events/s "
                f"({size} B each, core {stream_cpu[-1] * 1e6:.0f} us CPU/event); "
                f"server stream without the database {baseline_rates[-1]:,.0f}/s "
                f"({baseline_cpu[-1] * 1e6:.0f} us CPU/event); "
                f"ratio {stream_rates[-1] / baseline_rates[-1]:.2f}; load {load_average()}"
            )
        stream_per_s = max(stream_rates, default=0.0)
        stream_baseline = max(baseline_rates, default=1.0)
        stream_ratio = (
            statistics.median(a / b for a, b in zip(stream_rates, baseline_rates, strict=True))
            if stream_rates
            else 0.0
        )

        # (b) deliveries and raw POSTs, interleaved.
        receiver_port = free_port()
        received = ctx.Value("q", 0, lock=False)
        child = ctx.Process(target=_serve_receiver, args=(receiver_port, received), daemon=True)
        child.start()
        children.append(child)
        wait_for_port(receiver_port)
        assert child.pid is not None
        receiver_pid = child.pid
        url = f"http://127.0.0.1:{receiver_port}/hook"
        with setup.channel(token) as channel:
            webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhookEndpoint(
                webhook_pb2.CreateWebhookEndpointRequest(
                    parent=f"merchants/{MERCHANT}",
                    webhook_endpoint=webhook_pb2.WebhookEndpoint(url=url),
                )
            )
        body = resources.to_json(sample.event)
        # The raw POSTs again from as many processes as the core runs for
        # deliveries (its own, which dispatches, and the sending ones): a
        # second figure beside the baseline, not the ratio's.
        senders: list[Connection] = []
        for _ in range(processes + 1 if processes else 0):
            ours, theirs = ctx.Pipe()
            child = ctx.Process(
                target=_raw_sender,
                args=(theirs, url, body, max(1, CONCURRENCY // (processes + 1))),
                daemon=True,
            )
            child.start()
            children.append(child)
            senders.append(ours)
        parallel_rates: list[float] = []
        delivered_rates: list[float] = []
        raw_rates: list[float] = []
        delivery_cpus: list[float] = []
        pg_cpus: list[float] = []
        raw_cpus: list[float] = []
        lean_rates: list[float] = []
        lean_cpus: list[float] = []
        postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        floors = [FloorRuns(BARE_FLOOR), FloorRuns(PROMISES_FLOOR)]
        wals: list[float] = []
        for ddl in (
            *FLOOR_EVENT_SEQUENCE,
            *(floor_events_table(floor.schema.events) for floor in floors),
            *(table for floor in floors for table in floor.schema.tables),
        ):
            await _execute(dsn, ddl)
        if pg_statements:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("SELECT pg_stat_statements_reset()")
            finally:
                await conn.close()
        for r in range(ROUNDS):
            updates0 = await deliveries_updates(dsn)
            state0 = await table_state(dsn, pg_statements)
            commits0 = await commits(dsn)
            if history:
                # As checkpoint_timeout does every few minutes: the first change of
                # each page after it writes the whole page into the WAL.
                await _execute(dsn, "CHECKPOINT")
            wal0 = await wal_state(dsn)
            cpu0, pg0 = tree_cpu_s(core.pid), cluster_cpu_s(postmaster)
            own0, receiver0, machine0 = cpu_s(core.pid), cpu_s(receiver_pid), machine_idle()
            delivered_rates.append(
                await deliveries(dsn, STREAM_EVENTS + r * WEBHOOK_EVENTS, received)
            )
            delivery_cpu = (tree_cpu_s(core.pid) - cpu0) / WEBHOOK_EVENTS
            own_cpu = (cpu_s(core.pid) - own0) / WEBHOOK_EVENTS
            pg_cpu = (cluster_cpu_s(postmaster) - pg0) / WEBHOOK_EVENTS
            receiver_cpu = (cpu_s(receiver_pid) - receiver0) / WEBHOOK_EVENTS
            machine1 = machine_idle()
            wal1 = await wal_state(dsn)
            wals.append((wal1[0] - wal0[0]) / WEBHOOK_EVENTS)
            idle_share = (machine1[1] - machine0[1]) / max(1, machine1[0] - machine0[0])
            commits_per = (await commits(dsn) - commits0) / WEBHOOK_EVENTS
            updates1 = await deliveries_updates(dsn)
            updates_per = (updates1[0] - updates0[0]) / WEBHOOK_EVENTS
            hot_per = (updates1[1] - updates0[1]) / WEBHOOK_EVENTS
            state1 = await table_state(dsn, pg_statements)
            cpu0, receiver0 = time.process_time(), cpu_s(receiver_pid)
            raw_rates.append(await raw_posts(url, body, WEBHOOK_EVENTS))
            raw_cpu = (time.process_time() - cpu0) / WEBHOOK_EVENTS
            raw_receiver_cpu = (cpu_s(receiver_pid) - receiver0) / WEBHOOK_EVENTS
            cpu0 = time.process_time()
            lean_rates.append(await lean_posts(url, body, WEBHOOK_EVENTS))
            lean_cpus.append((time.process_time() - cpu0) / WEBHOOK_EVENTS)
            if senders:
                parallel_rates.append(raw_posts_parallel(senders, WEBHOOK_EVENTS))
            floor_lines = [
                await f.run_round(dsn, postmaster, url, body, r, pg_statements) for f in floors
            ]
            delivery_cpus.append(delivery_cpu)
            pg_cpus.append(pg_cpu)
            raw_cpus.append(raw_cpu)
            print(
                f"(b) round {r + 1}: webhook deliveries {delivered_rates[-1]:,.0f}/s "
                f"({len(body)} B bodies, {CONCURRENCY} at once; core {delivery_cpu * 1e6:.0f} "
                f"us CPU/delivery (its own process {own_cpu * 1e6:.0f}, {processes} delivery "
                f"processes {(delivery_cpu - own_cpu) * 1e6:.0f}), PostgreSQL {pg_cpu * 1e6:.0f} us and "
                f"{commits_per:.2f} commits with the bench's own writes and polls; "
                f"{updates_per:.2f} updates of each delivery row, {hot_per:.2f} of them HOT); raw POSTs {raw_rates[-1]:,.0f}/s ({raw_cpu * 1e6:.0f} us "
                f"CPU/POST), with the lean client {lean_rates[-1]:,.0f}/s ({lean_cpus[-1] * 1e6:.0f} us "
                f"CPU/POST); ratio {delivered_rates[-1] / max(raw_rates[-1], lean_rates[-1]):.2f}; "
                f"load {load_average()}"
            )
            print(
                f"    the receiver: {receiver_cpu * 1e6:.0f} us CPU per delivery, "
                f"{raw_receiver_cpu * 1e6:.0f} per raw POST; the machine's cores idle "
                f"{idle_share:.0%} of the deliveries' time"
            )
            print_table_state(state0, state1)
            print(
                f"    WAL per delivery: {wals[-1]:,.0f} B, {(wal1[1] - wal0[1]) / WEBHOOK_EVENTS:.1f} "
                f"records, {(wal1[2] - wal0[2]) / WEBHOOK_EVENTS:.2f} full-page images "
                f"(the bench's events included)"
            )
            if pg_statements:
                print(
                    f"      by relation: {await wal_by_relation(dsn, wal0[0], wal1[0], WEBHOOK_EVENTS)}"
                )
            for floor, (line, relations) in zip(floors, floor_lines, strict=True):
                print(
                    f"{line}; of the raw POSTs "
                    f"{floor.rates[-1] / max(raw_rates[-1], lean_rates[-1]):.2f}; "
                    f"Kassa / it {delivered_rates[-1] / floor.rates[-1]:.2f}"
                )
                if relations is not None:
                    print(f"      by relation: {relations}")
            if senders:
                print(
                    f"    raw POSTs from {len(senders)} processes (as many as the core "
                    f"runs with {processes} delivery processes): {parallel_rates[-1]:,.0f}/s"
                )
        # The ratio's baseline: each round's faster raw client (the machine's limit).
        baseline_rates = [max(a, b) for a, b in zip(raw_rates, lean_rates, strict=True)]
        delivered_per_s, raw_per_s = max(delivered_rates), max(baseline_rates)
        webhook_ratio = statistics.median(
            a / b for a, b in zip(delivered_rates, baseline_rates, strict=True)
        )
        # Against aiohttp's raw POSTs alone, as the ratio was before the second baseline.
        webhook_ratio_aiohttp = statistics.median(
            a / b for a, b in zip(delivered_rates, raw_rates, strict=True)
        )
        streamed = (
            ""
            if webhooks_only
            else f"StreamEvents {stream_per_s:,.0f}/s vs {stream_baseline:,.0f}/s; "
        )
        print(
            f"best of {ROUNDS}: {streamed}"
            f"webhook deliveries {delivered_per_s:,.0f}/s vs raw POSTs {raw_per_s:,.0f}/s. "
            f"Median of the rounds' ratios: "
            + ("" if webhooks_only else f"StreamEvents {stream_ratio:.2f}, ")
            + f"webhooks {webhook_ratio:.2f}"
        )
        for conn in senders:
            conn.send(0)
        if pg_statements:
            await print_statements(dsn, ROUNDS * WEBHOOK_EVENTS)
    finally:
        for child in children:
            child.terminate()
            child.join(5)
        if core is not None:
            core.stop(timeout_s=60)
        cluster.stop()
    if profile is not None:
        print_profile(profile / "core.prof")
    # The headline is StreamEvents; with --webhooks-only (no stream rounds ran)
    # it is the webhook deliveries, and no stream figure is reported.
    if webhooks_only:
        headline: dict[str, object] = {
            "bench": "events",
            "value": round(delivered_per_s),
            "unit": "deliveries/s",
            "baseline": round(raw_per_s),
            "ratio": round(webhook_ratio, 3),
        }
    else:
        headline = {
            "bench": "events",
            "value": round(stream_per_s),
            "unit": "events/s",
            "baseline": round(stream_baseline),
            "ratio": round(stream_ratio, 3),
            "stream_events_per_s": round(stream_per_s),
            "stream_ratio": round(stream_ratio, 3),
            "stream_ratio_of_best": round(stream_per_s / stream_baseline, 3),
            "stream_core_cpu_us_per_event": round(min(stream_cpu, default=0.0) * 1e6),
            "stream_baseline_cpu_us_per_event": round(min(baseline_cpu, default=0.0) * 1e6),
        }
    return {
        **headline,
        "webhook_delivery_processes": processes,
        "webhook_deliveries_per_s": round(delivered_per_s),
        "webhook_baseline_per_s": round(raw_per_s),
        "webhook_ratio": round(webhook_ratio, 3),
        "webhook_ratio_of_best": round(delivered_per_s / raw_per_s, 3),
        "webhook_core_cpu_us_per_delivery": round(min(delivery_cpus) * 1e6),
        "webhook_postgres_cpu_us_per_delivery": round(min(pg_cpus) * 1e6),
        "webhook_baseline_cpu_us_per_post": round(min(raw_cpus) * 1e6),
        "webhook_baseline_aiohttp_per_s": round(max(raw_rates)),
        "webhook_baseline_lean_per_s": round(max(lean_rates)),
        "webhook_baseline_lean_cpu_us_per_post": round(min(lean_cpus) * 1e6),
        "webhook_ratio_aiohttp": round(webhook_ratio_aiohttp, 3),
        # Not the ratio's baseline: raw POSTs from as many processes as the core runs.
        "webhook_raw_parallel_per_s": round(max(parallel_rates)) if parallel_rates else None,
        "webhook_history": history,
        "webhook_wal_bytes_per_delivery": round(statistics.median(wals)),
        # The floors (floor_round), same rounds: not the ratio's baseline.
        **{
            key: value
            for floor in floors
            for key, value in floor.figures(delivered_rates, baseline_rates).items()
        },
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, help="run the core under cProfile; write here")
    parser.add_argument(
        "--delivery-processes",
        type=int,
        help="[webhooks] delivery_processes of the core (default: the setting's default)",
    )
    parser.add_argument(
        "--webhooks-only",
        action="store_true",
        help="only part (b), the webhook deliveries and their raw POSTs",
    )
    parser.add_argument(
        "--pg-statements",
        action="store_true",
        help="load pg_stat_statements and print the statements' time per delivery",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="N finished deliveries before the rounds, and a CHECKPOINT before each round",
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kassa-bench-") as tmp:
        result = asyncio.run(
            main_async(
                Path(tmp),
                args.profile,
                args.delivery_processes,
                args.webhooks_only,
                args.pg_statements,
                args.history,
            )
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
