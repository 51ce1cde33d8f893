"""Ledger benchmark: (a) batched postings/s in block-sized batches vs raw
executemany of the same rows; (b) single-transfer CreateTransfers RPCs/s vs
raw single-row insert transactions on one connection. Same run, same
private PostgreSQL. Last line: JSON.

Run from the repo root: .venv/bin/python tests/bench/bench_ledger.py
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for extra in ("", "gen", "scripts"):
    sys.path.insert(0, str(ROOT / extra))

import grpc  # noqa: E402

from core.api.auth import Authenticator  # noqa: E402
from core.api.ledger_service import LedgerService  # noqa: E402
from core.ledger import store  # noqa: E402
from core.ledger.batcher import Poster  # noqa: E402
from core.ledger.rules import Account, Transfer  # noqa: E402
from core.merchants import Merchants  # noqa: E402
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


async def batched(pool) -> tuple[float, float]:
    rng = random.Random(1)
    async with pool.acquire() as conn:
        await conn.execute(
            """CREATE TABLE raw_rows (id text PRIMARY KEY, debit text, credit text,
               amount numeric(78,0), asset text, code int)"""
        )
        batches = [rows(f"b{k}", BATCH, rng) for k in range(BATCHES)]
        start = time.perf_counter()
        for b in batches:
            outcome = await store.create_transfers(conn, b, now())
            assert all(r.ok for r in outcome.results)
        ledger_s = time.perf_counter() - start
        start = time.perf_counter()
        for b in batches:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO raw_rows VALUES ($1, $2, $3, $4, $5, $6)",
                    [
                        (t.id, t.debit_account_id, t.credit_account_id, t.amount, t.asset, t.code)
                        for t in b
                    ],
                )
        raw_s = time.perf_counter() - start
    total = BATCH * BATCHES
    return total / ledger_s, total / raw_s


async def single(pool) -> tuple[float, float, float]:
    _, token = await Merchants(pool).create_key(None, ["ledger:read", "ledger:write"], "bench")
    poster = Poster(pool, now)
    poster.start()
    server = grpc.aio.server()
    pb_grpc.add_LedgerServiceServicer_to_server(
        LedgerService(pool, poster, Authenticator(pool, 60.0), now), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    metadata = (("authorization", f"Bearer {token}"),)
    done = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LedgerServiceStub(channel)

        async def client(c: int) -> None:
            nonlocal done
            rng = random.Random(c)
            i = 0
            while time.perf_counter() < deadline:
                t = pb.Transfer(
                    id=f"s{c}-{i}",
                    debit_account_id="world",
                    credit_account_id=f"acct{rng.randrange(ACCOUNTS)}",
                    amount="1",
                )
                result = await stub.CreateTransfers(
                    pb.CreateTransfersRequest(transfers=[t]), metadata=metadata
                )
                assert not result.results[0].reason
                i += 1
                done += 1

        await stub.GetAccount(pb.GetAccountRequest(id="world"), metadata=metadata)
        start = time.perf_counter()
        deadline = start + SINGLE_S
        await asyncio.gather(*(client(c) for c in range(CLIENTS)))
        rpc_per_s = done / (time.perf_counter() - start)
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

    return rpc_per_s, await raw(1), await raw(8)


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
            batched_per_s, raw_rows_per_s = await batched(pool)
            print(
                f"(a) batched postings: {batched_per_s:,.0f}/s; raw executemany {raw_rows_per_s:,.0f} rows/s"
            )
            rpc_per_s, raw_1, raw_8 = await single(pool)
            print(
                f"(b) single-posting RPCs: {rpc_per_s:,.0f}/s ({CLIENTS} clients); raw single-row insert "
                f"transactions {raw_1:,.0f}/s on 1 connection, {raw_8:,.0f}/s on 8"
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
        "single_per_s": round(rpc_per_s),
        "single_baseline_per_s": round(raw_1),
        "single_ratio": round(rpc_per_s / raw_1, 3),
        "single_baseline_8_connections_per_s": round(raw_8),
    }


def main() -> None:
    print(json.dumps(asyncio.run(main_async())))


if __name__ == "__main__":
    main()
