"""Ledger benchmark: (a) batched postings/s in block-sized batches vs raw
executemany of the same rows (and, second, into a table of the ledger's
shape); (b) single-transfer CreateTransfers RPCs/s vs
raw single-row insert transactions on one connection, empty unary gRPC
calls/s (the ceiling one server process allows), and the floor: the same
RPC answered once its transfer is durably inserted, with none of Kassa's
work (what the machine allows for such a call). Clients run in their own
processes. Same run, same private PostgreSQL. Last line: JSON.

Single postings run ROUNDS rounds, each one empty-call phase, the posting
phases, the floor's and the raw-insert phases back to back; the ratio
reported is the median of the rounds' ratios. Beside each rate, CPU per
call from /proc: the server process (LedgerService and the poster, the floor, or the
raw inserts' client), the client process, and PostgreSQL -- figures the
machine's load moves far less than the wall-clock rates.

Run from the repo root: .venv/bin/python -m tests.bench.bench_ledger
(`--part single` runs only the single postings, `--rounds N`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
for extra in ("", "gen", "scripts"):
    sys.path.insert(0, str(ROOT / extra))

import asyncpg  # noqa: E402
import grpc  # noqa: E402

from core import event_loop  # noqa: E402
from core.api.auth import Authenticator  # noqa: E402
from core.api.ledger_service import LedgerService  # noqa: E402
from core.ledger import store  # noqa: E402
from core.ledger.batcher import Poster  # noqa: E402
from core.ledger.queries import LedgerReader  # noqa: E402
from core.ledger.rules import Account, Transfer  # noqa: E402
from core.merchants import Merchants  # noqa: E402
from core.merchants.store import ApiKeys  # noqa: E402
from core.server import api_server  # noqa: E402
from core.store.db import create_pool  # noqa: E402
from core.store.migrate import migrate  # noqa: E402
from core.telemetry import logs  # noqa: E402
from kassa.ledger.v1 import ledger_pb2 as pb  # noqa: E402
from kassa.ledger.v1 import ledger_pb2_grpc as pb_grpc  # noqa: E402
from localstack.postgres import PostgresCluster  # noqa: E402
from tests.support.proc_cpu import cluster_cpu_s  # noqa: E402

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"
BATCH = 5000
BATCHES = 12
ACCOUNTS = 1000
SINGLE_S = 8.0
CLIENTS = 32
CLIENT_PROCESSES = 1
ROUNDS = 3


def now() -> datetime:
    return datetime.now(UTC)


def rows(prefix: str, n: int, rng: random.Random) -> list[Transfer]:
    return [
        Transfer(
            f"{prefix}-{i}",
            "world",
            f"acct{rng.randrange(ACCOUNTS)}",
            rng.randint(1, 10**9),
            ASSET,
            1,
        )
        for i in range(n)
    ]


class Batched(NamedTuple):
    postings_per_s: float
    raw_rows_per_s: float
    shaped_rows_per_s: float
    # Server CPU per batch (the backend's time on a CPU, ms): what the
    # machine's other load does not inflate the way it does wall time.
    server_ms: float | None
    raw_server_ms: float | None


def _server_cpu_s(pid: int) -> float | None:
    """A local backend's time on a CPU so far (Linux schedstat), if readable."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


async def batched(pool: asyncpg.Pool) -> Batched:
    """Postings/s, raw executemany rows/s, raw executemany rows/s into a table
    of ledger_transfers' shape, interleaved batch by batch so that the load
    of the other processes on the machine falls on all three alike; and the
    server CPU per batch of the first two.

    The issue's baseline is the first: the same six values per row into a
    table with one index. The second is the same executemany into a table
    like ledger_transfers (its columns, constraints and indexes — id, seq,
    debit, credit and the partial ones — without its trigger): what storing
    these rows costs before any rule or balance.
    """
    rng = random.Random(1)
    async with pool.acquire() as conn:
        await conn.execute(
            """CREATE TABLE raw_rows (id text PRIMARY KEY, debit text, credit text,
               amount numeric(78,0), asset text, code int)"""
        )
        await conn.execute("CREATE TABLE raw_shaped (LIKE ledger_transfers INCLUDING ALL)")
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        batches = [rows(f"b{k}", BATCH, rng) for k in range(BATCHES)]
        ledger_s = raw_s = shaped_s = 0.0
        server_s: float | None = 0.0
        raw_server_s: float | None = 0.0
        for b in batches:
            cpu = _server_cpu_s(pid)
            start = time.perf_counter()
            outcome = await store.create_transfers(conn, b, now())
            ledger_s += time.perf_counter() - start
            server_s = _add(server_s, cpu, _server_cpu_s(pid))
            assert all(r.ok for r in outcome.results)
            values = [
                (t.id, t.debit_account_id, t.credit_account_id, t.amount, t.asset, t.code)
                for t in b
            ]
            cpu = _server_cpu_s(pid)
            start = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO raw_rows VALUES ($1, $2, $3, $4, $5, $6)", values
                )
            raw_s += time.perf_counter() - start
            raw_server_s = _add(raw_server_s, cpu, _server_cpu_s(pid))
            start = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(
                    """INSERT INTO raw_shaped (id, debit_account_id, credit_account_id, amount,
                                               asset, code, flags)
                       VALUES ($1, $2, $3, $4, $5, $6, 0)""",
                    values,
                )
            shaped_s += time.perf_counter() - start
    total = BATCH * BATCHES

    def per_batch_ms(s: float | None) -> float | None:
        return None if s is None else s * 1000 / BATCHES

    return Batched(
        total / ledger_s,
        total / raw_s,
        total / shaped_s,
        per_batch_ms(server_s),
        per_batch_ms(raw_server_s),
    )


def _add(total: float | None, before: float | None, after: float | None) -> float | None:
    if total is None or before is None or after is None:
        return None
    return total + after - before


# The empty-call baseline: one unary method that does nothing, raw bytes in and out.
EMPTY_METHOD = "/bench.Empty/Call"


def _identity(data: bytes) -> bytes:
    return data


async def _empty(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def _empty_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "bench.Empty",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                _empty, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )


# The floor: a unary call whose answer waits for a durable insert, and nothing
# else. The same method path and messages as LedgerService.CreateTransfers (so
# the same stub calls it and both sides (de)serialize the same bytes), served by
# a group commit as small as one can be: no auth, bounds, balances, idempotency
# or access line. Kassa's posting over it is what Kassa's own work costs.
FLOOR_INSERT = """INSERT INTO raw_rows (id, debit, credit, amount, asset, code)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::int[])"""

_FloorRow = tuple[str, str, str, int, str, int]


class FloorCommitter:
    """One task on one kept connection: every request that arrived while the
    previous statement was in flight joins the next one, a single autocommit
    `INSERT ... SELECT FROM unnest` (synchronous commit as the server's, as the
    poster's guarded statement), and each caller is answered when its group
    committed -- the poster's shape without a decision, a retry or a cache."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.groups = 0  # statements sent, for the requests-per-group figure
        self._queue: asyncio.Queue[tuple[list[_FloorRow], asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger floor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, rows: list[_FloorRow]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((rows, future))
        await future

    async def _run(self) -> None:
        async with self.pool.acquire() as conn:
            while True:
                group = [await self._queue.get()]
                while not self._queue.empty():
                    group.append(self._queue.get_nowait())
                self.groups += 1
                merged = [row for rows, _ in group for row in rows]
                try:
                    await conn.execute(FLOOR_INSERT, *(list(c) for c in zip(*merged, strict=True)))
                except Exception as exc:  # the bench's clients assert on the answer
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in group:
                    if not future.done():
                        future.set_result(None)


def _floor_server(committer: FloorCommitter) -> grpc.aio.Server:
    async def create(
        request: pb.CreateTransfersRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTransfersResponse:
        rows = [
            (t.id, t.debit_account_id, t.credit_account_id, int(t.amount), t.asset, t.code)
            for t in request.transfers
        ]
        await committer.submit(rows)
        # The answer Kassa gives an accepted transfer: its id, no reason.
        return pb.CreateTransfersResponse(results=[pb.CreateResult(id=row[0]) for row in rows])

    # Registered as the generated add_LedgerServiceServicer_to_server registers
    # LedgerService's methods, so grpc finds it by the same path.
    methods = {
        "CreateTransfers": grpc.unary_unary_rpc_method_handler(
            create,
            request_deserializer=pb.CreateTransfersRequest.FromString,
            response_serializer=pb.CreateTransfersResponse.SerializeToString,
        )
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("kassa.ledger.v1.LedgerService", methods),)
    )
    server.add_registered_method_handlers("kassa.ledger.v1.LedgerService", methods)
    server.add_generic_rpc_handlers((_empty_handler(),))
    return server


async def _clients_async(
    port: int, token: str, kind: str, seconds: float, clients: int, tag: str
) -> tuple[int, float, float]:
    metadata = (("authorization", f"Bearer {token}"),)
    done = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LedgerServiceStub(channel)
        empty = channel.unary_unary(
            EMPTY_METHOD, request_serializer=_identity, response_deserializer=_identity
        )

        async def client(c: int) -> None:
            nonlocal done
            rng = random.Random(f"{tag}-{c}")
            i = 0
            while time.perf_counter() < deadline:
                if kind == "empty":
                    await empty(b"", metadata=metadata)
                else:
                    t = pb.Transfer(
                        id=f"s{tag}-{c}-{i}",
                        debit_account_id="world",
                        credit_account_id=f"acct{rng.randrange(ACCOUNTS)}",
                        amount="1",
                    )
                    result = await stub.CreateTransfers(
                        pb.CreateTransfersRequest(transfers=[t]), metadata=metadata
                    )
                    assert not result.results[0].reason, result
                i += 1
                done += 1

        # Warm up (connection, auth cache) before the clock starts. The floor
        # serves CreateTransfers alone (and the empty call).
        if kind != "floor":
            await stub.GetAccount(pb.GetAccountRequest(id="world"), metadata=metadata)
        await empty(b"", metadata=metadata)
        cpu0 = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(client(c) for c in range(clients)))
        return done, time.perf_counter() - start, time.process_time() - cpu0


def _clients(
    port: int, token: str, kind: str, seconds: float, clients: int, tag: str
) -> tuple[int, float, float]:
    """One client process: `clients` concurrent callers on one channel, each
    making empty calls or single-transfer CreateTransfers ("ledger", "floor").
    (calls, seconds, the process's CPU seconds meanwhile)."""
    return asyncio.run(_clients_async(port, token, kind, seconds, clients, tag))


class Phase:
    """One phase's rate and CPU per call (µs): the server's process (or the
    raw inserts' client, this process), of it the serving thread (the event loop
    that runs grpc's handlers, the edge, LedgerService and the poster: one core at
    most, so 1 / its CPU per call bounds the rate whatever the other core does),
    the client processes, PostgreSQL."""

    def __init__(
        self,
        calls: int,
        per_s: float,
        server_s: float,
        client_s: float,
        pg_s: float,
        serving_s: float = 0.0,
    ):
        self.calls = calls
        self.per_s = per_s
        self.server_us = server_s / calls * 1e6
        self.serving_us = serving_s / calls * 1e6
        self.client_us = client_s / calls * 1e6
        self.pg_us = pg_s / calls * 1e6

    def __str__(self) -> str:
        return (
            f"{self.per_s:,.0f}/s (CPU/call: server {self.server_us:.0f} us, of it the serving "
            f"thread {self.serving_us:.0f}, client {self.client_us:.0f} us, PostgreSQL "
            f"{self.pg_us:.0f} us)"
        )


async def _rate(
    executor: ProcessPoolExecutor, port: int, token: str, kind: str, tag: str, postmaster: int
) -> Phase:
    """Calls/s of CLIENTS callers spread over CLIENT_PROCESSES processes."""
    loop = asyncio.get_running_loop()
    per_process = CLIENTS // CLIENT_PROCESSES
    # This coroutine runs on the serving loop's thread: thread_time() is that thread's CPU.
    server0, serving0, pg0 = time.process_time(), time.thread_time(), cluster_cpu_s(postmaster)
    results = await asyncio.gather(
        *(
            loop.run_in_executor(
                executor, _clients, port, token, kind, SINGLE_S, per_process, f"{tag}{k}"
            )
            for k in range(CLIENT_PROCESSES)
        )
    )
    server_s, pg_s = time.process_time() - server0, cluster_cpu_s(postmaster) - pg0
    serving_s = time.thread_time() - serving0
    calls = sum(done for done, _, _ in results)
    return Phase(
        calls,
        sum(done / elapsed for done, elapsed, _ in results),
        server_s,
        sum(cpu for _, _, cpu in results),
        pg_s,
        serving_s,
    )


async def _raw(pool: asyncpg.Pool, conns: int, tag: str, postmaster: int) -> Phase:
    """Raw single-row INSERTs in autocommit on `conns` connections (this process the client)."""
    count = 0

    async def one(k: int) -> None:
        nonlocal count
        async with pool.acquire() as conn:
            i = 0
            while time.perf_counter() < stop_at:
                await conn.execute(
                    "INSERT INTO raw_rows VALUES ($1, 'world', 'acct1', 1, $2, 1)",
                    f"r{tag}-{conns}-{k}-{i}",
                    ASSET,
                )
                i += 1
                count += 1

    cpu0, thread0, pg0 = time.process_time(), time.thread_time(), cluster_cpu_s(postmaster)
    begin = time.perf_counter()
    stop_at = begin + SINGLE_S / 2
    await asyncio.gather(*(one(k) for k in range(conns)))
    per_s = count / (time.perf_counter() - begin)
    # The client is this process: its CPU is the "client" figure, no server.
    return Phase(
        count,
        per_s,
        0.0,
        time.process_time() - cpu0,
        cluster_cpu_s(postmaster) - pg0,
        time.thread_time() - thread0,
    )


async def single(
    pool: asyncpg.Pool, postmaster: int, rounds: int, log_path: Path
) -> list[dict[str, Phase]]:
    """Per round: single-posting RPCs through the core's edge and without it,
    empty calls, the floor's calls, raw insert tx on 1 and on 8 connections.

    Three servers run in this process. Two share one poster: the core's
    (`core.server.api_server`: the RED metrics and access log of every call,
    then the edge's decode, authentication and bounds -- what a caller gets;
    the access log goes to `log_path` as the core writes it to stderr) and a
    bare one (LedgerService alone, plus the empty method: what the earlier
    figures measured). The third is the floor (`_floor_server`): the same
    method, answered when a group commit of bare rows into raw_rows committed.
    The clients run in CLIENT_PROCESSES other processes,
    so neither side's CPU is counted against the other's event loop.
    """
    async with pool.acquire() as conn:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS raw_rows (id text PRIMARY KEY, debit text, credit text,
               amount numeric(78,0), asset text, code int)"""
        )
    _, token = await Merchants(pool).create_key(None, ["ledger:read", "ledger:write"], "bench")
    poster = Poster(pool, now)
    poster.start()
    auth = Authenticator(ApiKeys(pool), 60.0)
    bare = grpc.aio.server()
    pb_grpc.add_LedgerServiceServicer_to_server(
        LedgerService(LedgerReader(pool), poster, auth, now), bare
    )
    bare.add_generic_rpc_handlers((_empty_handler(),))
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    core = api_server(auth, tls=False)
    pb_grpc.add_LedgerServiceServicer_to_server(
        LedgerService(LedgerReader(pool), poster, auth, now), core
    )
    core.add_generic_rpc_handlers((_empty_handler(),))
    core_port = core.add_insecure_port("127.0.0.1:0")
    committer = FloorCommitter(pool)
    committer.start()
    floor = _floor_server(committer)
    floor_port = floor.add_insecure_port("127.0.0.1:0")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    with log_path.open("w") as log_file:
        handler = logs.handler()
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(log_file)
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        await bare.start()
        await core.start()
        await floor.start()
        out: list[dict[str, Phase]] = []
        try:
            with ProcessPoolExecutor(
                CLIENT_PROCESSES, mp_context=mp.get_context("spawn")
            ) as executor:
                for r in range(rounds):
                    groups0 = poster.groups
                    figures = {
                        "empty": await _rate(
                            executor, bare_port, token, "empty", f"e{r}-", postmaster
                        ),
                        "ledger": await _rate(
                            executor, core_port, token, "ledger", f"s{r}-", postmaster
                        ),
                    }
                    groups1 = poster.groups
                    figures["bare"] = await _rate(
                        executor, bare_port, token, "ledger", f"b{r}-", postmaster
                    )
                    groups2 = poster.groups
                    floor0 = committer.groups
                    figures["floor"] = await _rate(
                        executor, floor_port, token, "floor", f"f{r}-", postmaster
                    )
                    floor_groups = committer.groups - floor0
                    figures |= {
                        "raw_1": await _raw(pool, 1, str(r), postmaster),
                        "raw_8": await _raw(pool, 8, str(r), postmaster),
                    }
                    out.append(figures)
                    # The poster's and the floor's groups (requests per group), and how much
                    # of the machine the phase kept busy: the three processes' CPU per
                    # posting x the rate.
                    for kind, groups in (
                        ("ledger", groups1 - groups0),
                        ("bare", groups2 - groups1),
                        ("floor", floor_groups),
                    ):
                        f = figures[kind]
                        print(
                            f"(b) round {r + 1} {kind}: {groups} groups, "
                            f"{f.calls / max(groups, 1):.1f} requests a group; "
                            f"{(f.server_us + f.client_us + f.pg_us) * f.per_s / 1e6:.2f} of "
                            f"{os.cpu_count()} cores busy",
                            flush=True,
                        )
                    print(
                        f"(b) round {r + 1}: single-posting RPCs {figures['ledger']}; without "
                        f"the edge {figures['bare']}; empty unary calls {figures['empty']}; raw "
                        f"single-row insert tx on 1 connection {figures['raw_1']}, on 8 "
                        f"{figures['raw_8']}; ratio "
                        f"{figures['ledger'].per_s / figures['raw_1'].per_s:.3f} (without the "
                        f"edge {figures['bare'].per_s / figures['raw_1'].per_s:.3f})",
                        flush=True,
                    )
                    # Where the posting's CPU above the floor's goes: the edge (the core's
                    # server over the bare one) and LedgerService with the poster (the bare
                    # server over the floor).
                    ledger, bare_phase, floor_phase = (
                        figures["ledger"],
                        figures["bare"],
                        figures["floor"],
                    )
                    print(
                        f"(b) round {r + 1} floor: {floor_phase}; floor / raw insert "
                        f"{floor_phase.per_s / figures['raw_1'].per_s:.3f}, posting / floor "
                        f"{ledger.per_s / floor_phase.per_s:.3f}; the posting's CPU over the "
                        f"floor's: server {ledger.server_us - floor_phase.server_us:+.0f} us "
                        f"(serving thread {ledger.serving_us - floor_phase.serving_us:+.0f}), "
                        f"client {ledger.client_us - floor_phase.client_us:+.0f}, PostgreSQL "
                        f"{ledger.pg_us - floor_phase.pg_us:+.0f}; of the server's, the edge "
                        f"{ledger.server_us - bare_phase.server_us:+.0f} us (serving thread "
                        f"{ledger.serving_us - bare_phase.serving_us:+.0f}), LedgerService and "
                        f"the poster {bare_phase.server_us - floor_phase.server_us:+.0f} us "
                        f"(serving thread {bare_phase.serving_us - floor_phase.serving_us:+.0f})",
                        flush=True,
                    )
        finally:
            await floor.stop(0)
            await core.stop(0)
            await bare.stop(0)
            await committer.stop()
            await poster.stop()
            root.handlers[:], level = saved
            root.setLevel(level)
    return out


async def main_async(part: str, rounds: int) -> dict[str, object]:
    out: dict[str, object] = {"bench": "ledger"}
    with tempfile.TemporaryDirectory(prefix="kassa-bench-") as tmp:
        cluster = PostgresCluster(Path(tmp) / "pg")
        cluster.start()
        try:
            dsn = cluster.create_database("bench")
            postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            await migrate(dsn)
            pool = await create_pool(dsn, max_size=12, min_size=10)
            async with pool.acquire() as conn:
                await store.create_accounts(
                    conn,
                    [
                        Account("world", ASSET),
                        *(Account(f"acct{i}", ASSET) for i in range(ACCOUNTS)),
                    ],
                )
            if part in ("all", "batched"):
                measured = await batched(pool)
                batched_per_s, raw_rows_per_s, shaped_rows_per_s = measured[:3]
                print(
                    f"(a) batched postings: {batched_per_s:,.0f}/s; raw executemany "
                    f"{raw_rows_per_s:,.0f} rows/s; into a table of the ledger's shape "
                    f"{shaped_rows_per_s:,.0f} rows/s"
                )
                server_ms, raw_server_ms = measured.server_ms, measured.raw_server_ms
                if server_ms is not None and raw_server_ms is not None:
                    print(
                        f"    server CPU per {BATCH:,}-row batch: postings {server_ms:.1f} ms,"
                        f" raw executemany {raw_server_ms:.1f} ms"
                        f" (ratio {raw_server_ms / server_ms:.3f})"
                    )
                out.update(
                    {
                        "value": round(batched_per_s),
                        "unit": "postings/s",
                        "baseline": round(raw_rows_per_s),
                        "ratio": round(batched_per_s / raw_rows_per_s, 3),
                        "batched_postings_per_s": round(batched_per_s),
                        "batched_ratio": round(batched_per_s / raw_rows_per_s, 3),
                        "batched_shaped_baseline_rows_per_s": round(shaped_rows_per_s),
                        "batched_vs_shaped_ratio": round(batched_per_s / shaped_rows_per_s, 3),
                        "batched_server_ms_per_batch": None
                        if server_ms is None
                        else round(server_ms, 1),
                        "batched_raw_server_ms_per_batch": None
                        if raw_server_ms is None
                        else round(raw_server_ms, 1),
                    }
                )
            if part == "single":
                # The ledger as the batched part leaves it (the same 60,000 transfers),
                # so that the single postings meet the same table either way.
                rng = random.Random(1)
                async with pool.acquire() as conn:
                    for k in range(BATCHES):
                        await store.create_transfers(conn, rows(f"b{k}", BATCH, rng), now())
            if part in ("all", "single"):
                # Statistics as autovacuum keeps them on a live ledger: without them the
                # planner takes the 60,000 transfers just written for an empty table.
                async with pool.acquire() as conn:
                    await conn.execute("ANALYZE ledger_transfers, ledger_accounts")
                out.update(
                    _single_summary(await single(pool, postmaster, rounds, Path(tmp) / "core.log"))
                )
                if part == "single":
                    out.update(
                        value=out["single_per_s"],
                        unit="single postings/s",
                        baseline=out["single_baseline_per_s"],
                        ratio=out["single_ratio"],
                    )
            await pool.close()
        finally:
            cluster.stop()
    return out


def _single_summary(rounds: list[dict[str, Phase]]) -> dict[str, object]:
    """Median round by round (each ratio within its own round)."""

    def median(f: Callable[[dict[str, Phase]], float]) -> float:
        return statistics.median(f(r) for r in rounds)

    def cpu_us(kind: str) -> dict[str, int]:
        return {
            "server": round(median(lambda r: r[kind].server_us)),
            "serving_thread": round(median(lambda r: r[kind].serving_us)),
            "client": round(median(lambda r: r[kind].client_us)),
            "postgres": round(median(lambda r: r[kind].pg_us)),
        }

    def over_us(kind: str, below: str) -> dict[str, int]:
        """Median, round by round, of `kind`'s CPU per call above `below`'s."""
        return {
            "server": round(median(lambda r: r[kind].server_us - r[below].server_us)),
            "serving_thread": round(median(lambda r: r[kind].serving_us - r[below].serving_us)),
            "client": round(median(lambda r: r[kind].client_us - r[below].client_us)),
            "postgres": round(median(lambda r: r[kind].pg_us - r[below].pg_us)),
        }

    ratio = median(lambda r: r["ledger"].per_s / r["raw_1"].per_s)
    bare_ratio = median(lambda r: r["bare"].per_s / r["raw_1"].per_s)
    vs_empty = median(lambda r: r["ledger"].per_s / r["empty"].per_s)
    to_floor = median(lambda r: r["ledger"].per_s / r["floor"].per_s)
    floor_ratio = median(lambda r: r["floor"].per_s / r["raw_1"].per_s)
    floor_per_s = median(lambda r: r["floor"].per_s)
    ledger_per_s = median(lambda r: r["ledger"].per_s)
    raw_per_s = median(lambda r: r["raw_1"].per_s)
    print(
        f"(b) single-posting RPCs ({CLIENTS} clients in {CLIENT_PROCESSES} processes, median of "
        f"{len(rounds)} rounds): {ledger_per_s:,.0f}/s vs raw single-row insert tx "
        f"{raw_per_s:,.0f}/s, same-round ratio {ratio:.3f} (without the edge "
        f"{median(lambda r: r['bare'].per_s):,.0f}/s, {bare_ratio:.3f}); vs empty calls "
        f"{vs_empty:.3f}; the floor (a bare group commit behind the same RPC) "
        f"{floor_per_s:,.0f}/s, {floor_ratio:.3f} of the raw insert, the posting "
        f"{to_floor:.3f} of it"
    )
    return {
        "single_per_s": round(ledger_per_s),
        "single_baseline_per_s": round(raw_per_s),
        "single_ratio": round(ratio, 3),
        "single_ratios": [round(r["ledger"].per_s / r["raw_1"].per_s, 3) for r in rounds],
        "single_bare_per_s": round(median(lambda r: r["bare"].per_s)),
        "single_bare_ratio": round(bare_ratio, 3),
        "single_bare_ratios": [round(r["bare"].per_s / r["raw_1"].per_s, 3) for r in rounds],
        "single_baseline_8_connections_per_s": round(median(lambda r: r["raw_8"].per_s)),
        "empty_grpc_calls_per_s": round(median(lambda r: r["empty"].per_s)),
        "single_vs_empty_grpc": round(vs_empty, 3),
        "single_floor_per_s": round(floor_per_s),
        "single_floor_ratio": round(floor_ratio, 3),
        "single_floor_ratios": [round(r["floor"].per_s / r["raw_1"].per_s, 3) for r in rounds],
        "single_ratio_to_floor": round(to_floor, 3),
        "single_ratios_to_floor": [round(r["ledger"].per_s / r["floor"].per_s, 3) for r in rounds],
        "single_cpu_us": {
            kind: cpu_us(kind) for kind in ("ledger", "bare", "floor", "empty", "raw_1")
        },
        # The posting's CPU per call above the floor's, and its two parts: the edge
        # (core over bare) and LedgerService with the poster (bare over floor).
        "single_cpu_us_over_floor": {
            "posting": over_us("ledger", "floor"),
            "edge": over_us("ledger", "bare"),
            "service_and_poster": over_us("bare", "floor"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("all", "batched", "single"), default="all")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="single-posting rounds")
    args = parser.parse_args()
    # The servers run in this process, on the loop kassa-core runs on (core/event_loop.py),
    # and so do the raw inserts' client; the callers stay on asyncio's loop.
    print(json.dumps(event_loop.run(main_async(args.part, args.rounds))))


if __name__ == "__main__":
    main()
