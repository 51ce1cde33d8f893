"""Ledger benchmark: (a) batched postings/s in block-sized batches vs raw
executemany of the same rows (and, second, into a table of the ledger's
shape); (b) single-transfer CreateTransfers RPCs/s vs
raw single-row insert transactions on one connection, and empty unary gRPC
calls/s (the ceiling one server process allows). Clients run in their own
processes. Same run, same private PostgreSQL. Last line: JSON.

Run from the repo root: .venv/bin/python tests/bench/bench_ledger.py
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
for extra in ("", "gen", "scripts"):
    sys.path.insert(0, str(ROOT / extra))

import asyncpg  # noqa: E402
import grpc  # noqa: E402

from core.api.auth import Authenticator  # noqa: E402
from core.api.ledger_service import LedgerService  # noqa: E402
from core.ledger import store  # noqa: E402
from core.ledger.batcher import Poster  # noqa: E402
from core.ledger.queries import LedgerReader  # noqa: E402
from core.ledger.rules import Account, Transfer  # noqa: E402
from core.merchants import Merchants  # noqa: E402
from core.merchants.store import ApiKeys  # noqa: E402
from core.store.db import create_pool  # noqa: E402
from core.store.migrate import migrate  # noqa: E402
from kassa.ledger.v1 import ledger_pb2 as pb  # noqa: E402
from kassa.ledger.v1 import ledger_pb2_grpc as pb_grpc  # noqa: E402
from localstack.postgres import PostgresCluster  # noqa: E402

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"
BATCH = 5000
BATCHES = 12
ACCOUNTS = 1000
SINGLE_S = 8.0
CLIENTS = 32
CLIENT_PROCESSES = 1


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
EMPTY_METHOD = "/kassa.bench.Empty/Call"


def _identity(data: bytes) -> bytes:
    return data


async def _empty(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def _empty_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "kassa.bench.Empty",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                _empty, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )


async def _clients_async(
    port: int, token: str, kind: str, seconds: float, clients: int, tag: str
) -> tuple[int, float]:
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

        # Warm up (connection, auth cache) before the clock starts.
        await stub.GetAccount(pb.GetAccountRequest(id="world"), metadata=metadata)
        await empty(b"", metadata=metadata)
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(client(c) for c in range(clients)))
        return done, time.perf_counter() - start


def _clients(
    port: int, token: str, kind: str, seconds: float, clients: int, tag: str
) -> tuple[int, float]:
    """One client process: `clients` concurrent callers on one channel."""
    return asyncio.run(_clients_async(port, token, kind, seconds, clients, tag))


async def _rate(executor: ProcessPoolExecutor, port: int, token: str, kind: str, tag: str) -> float:
    """Calls/s of CLIENTS callers spread over CLIENT_PROCESSES processes."""
    loop = asyncio.get_running_loop()
    per_process = CLIENTS // CLIENT_PROCESSES
    results = await asyncio.gather(
        *(
            loop.run_in_executor(
                executor, _clients, port, token, kind, SINGLE_S, per_process, f"{tag}{k}"
            )
            for k in range(CLIENT_PROCESSES)
        )
    )
    return sum(done / elapsed for done, elapsed in results)


async def single(pool: asyncpg.Pool) -> tuple[float, float, float, float]:
    """(single-posting RPCs/s, empty calls/s, raw insert tx/s on 1 and on 8 connections).

    The server (LedgerService as the core serves it, plus an empty method)
    runs in this process; the clients run in CLIENT_PROCESSES other processes,
    so neither side's CPU is counted against the other's event loop.
    """
    _, token = await Merchants(pool).create_key(None, ["ledger:read", "ledger:write"], "bench")
    poster = Poster(pool, now)
    poster.start()
    server = grpc.aio.server()
    pb_grpc.add_LedgerServiceServicer_to_server(
        LedgerService(LedgerReader(pool), poster, Authenticator(ApiKeys(pool), 60.0), now), server
    )
    server.add_generic_rpc_handlers((_empty_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    with ProcessPoolExecutor(CLIENT_PROCESSES, mp_context=mp.get_context("spawn")) as executor:
        empty_per_s = await _rate(executor, port, token, "empty", "e")
        rpc_per_s = await _rate(executor, port, token, "ledger", "s")
    await server.stop(0)
    await poster.stop()

    async def raw(conns: int) -> float:
        count = 0

        async def one(k: int) -> None:
            nonlocal count
            async with pool.acquire() as conn:
                i = 0
                while time.perf_counter() < stop_at:
                    await conn.execute(
                        "INSERT INTO raw_rows VALUES ($1, 'world', 'acct1', 1, $2, 1)",
                        f"r{conns}-{k}-{i}",
                        ASSET,
                    )
                    i += 1
                    count += 1

        begin = time.perf_counter()
        stop_at = begin + SINGLE_S / 2
        await asyncio.gather(*(one(k) for k in range(conns)))
        return count / (time.perf_counter() - begin)

    return rpc_per_s, empty_per_s, await raw(1), await raw(8)


async def main_async() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="kassa-bench-") as tmp:
        cluster = PostgresCluster(Path(tmp) / "pg")
        cluster.start()
        try:
            dsn = cluster.create_database("bench")
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
            measured = await batched(pool)
            batched_per_s, raw_rows_per_s, shaped_rows_per_s = measured[:3]
            # Statistics as autovacuum keeps them on a live ledger: without them the
            # planner takes the 60,000 transfers just written for an empty table.
            async with pool.acquire() as conn:
                await conn.execute("ANALYZE ledger_transfers, ledger_accounts")
            print(
                f"(a) batched postings: {batched_per_s:,.0f}/s; raw executemany {raw_rows_per_s:,.0f}"
                f" rows/s; into a table of the ledger's shape {shaped_rows_per_s:,.0f} rows/s"
            )
            server_ms, raw_server_ms = measured.server_ms, measured.raw_server_ms
            if server_ms is not None and raw_server_ms is not None:
                print(
                    f"    server CPU per {BATCH:,}-row batch: postings {server_ms:.1f} ms,"
                    f" raw executemany {raw_server_ms:.1f} ms (ratio {raw_server_ms / server_ms:.3f})"
                )
            rpc_per_s, empty_per_s, raw_1, raw_8 = await single(pool)
            print(
                f"(b) single-posting RPCs: {rpc_per_s:,.0f}/s ({CLIENTS} clients in "
                f"{CLIENT_PROCESSES} processes); empty unary calls {empty_per_s:,.0f}/s; raw "
                f"single-row insert transactions {raw_1:,.0f}/s on 1 connection, {raw_8:,.0f}/s on 8"
            )
            await pool.close()
        finally:
            cluster.stop()
    return {
        "bench": "ledger",
        "value": round(batched_per_s),
        "unit": "postings/s",
        "baseline": round(raw_rows_per_s),
        "ratio": round(batched_per_s / raw_rows_per_s, 3),
        "batched_postings_per_s": round(batched_per_s),
        "batched_ratio": round(batched_per_s / raw_rows_per_s, 3),
        "batched_shaped_baseline_rows_per_s": round(shaped_rows_per_s),
        "batched_vs_shaped_ratio": round(batched_per_s / shaped_rows_per_s, 3),
        "batched_server_ms_per_batch": None if server_ms is None else round(server_ms, 1),
        "batched_raw_server_ms_per_batch": None
        if raw_server_ms is None
        else round(raw_server_ms, 1),
        "single_per_s": round(rpc_per_s),
        "single_baseline_per_s": round(raw_1),
        "single_ratio": round(rpc_per_s / raw_1, 3),
        "single_baseline_8_connections_per_s": round(raw_8),
        "empty_grpc_calls_per_s": round(empty_per_s),
        "single_vs_empty_grpc": round(rpc_per_s / empty_per_s, 3),
    }


def main() -> None:
    print(json.dumps(asyncio.run(main_async())))


if __name__ == "__main__":
    main()
