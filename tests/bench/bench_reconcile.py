"""scripts/bench reconcile: one reconciliation of N deposit addresses (default
100,000), per address, against raw batched eth_getBalance in the same run.

Set-up (not timed): a private PostgreSQL with N paid native-coin invoices
(COPY) and their custody booked in the ledger through the ledger store
(1,000-transfer batches, referencing each invoice); anvil holding exactly
those balances (anvil_setBalance, batched), a few blocks mined on top; the
EVM adapter as its own process; the chain cursor where the core would have
it. Timed: `Reconciler.run_once` — the core's code, in this process: the
snapshot SQL (custody attributed to N addresses), GetBalances at the settled
height over gRPC to the adapter (which batches eth_getBalance to anvil), the
pure comparison and the stored run. It must find nothing unexplained, and a
second run must find the same.

With --touched K (default 1,000), then: K addresses each receive one more
wei on chain and in the ledger (a transfer referencing its invoice), blocks
are mined, and an incremental run (`run_once(..., incremental=True)`) is
timed: it must compare those K (not N) and find nothing unexplained.

Baseline: the same N balances at the same height read straight from anvil
by this process with raw JSON-RPC batches of 500 over one WebSocket, 4 in
flight (what the adapter does, without gRPC, the database or Kassa's code).
Figures are medians of --repeats runs of each, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for extra in ("", "gen", "scripts"):
    sys.path.insert(0, str(ROOT / extra))

import asyncpg  # noqa: E402
import grpc  # noqa: E402
import websockets  # noqa: E402

from core.config import parse  # noqa: E402
from core.ledger import accounts, payments, store  # noqa: E402
from core.ledger.rules import Transfer  # noqa: E402
from core.reconcile.runner import Reconciler  # noqa: E402
from core.reconcile.settings import ReconcileSettings  # noqa: E402
from core.store.migrate import migrate  # noqa: E402
from core.webhooks.sealing import new_kek_line  # noqa: E402
from kassa.chain.v1 import adapter_pb2_grpc  # noqa: E402
from localstack import devcerts  # noqa: E402
from localstack.anvil import Anvil  # noqa: E402
from localstack.postgres import PostgresCluster  # noqa: E402
from tests.support.evm import certs, start_adapter  # noqa: E402

CHAIN = "eip155:31337"
NATIVE = f"{CHAIN}/slip44:60"
CONFIRMATIONS = 3
BATCH = 500
IN_FLIGHT = 4


async def _ws_batches(url: str, calls: list[tuple[str, list[object]]]) -> list[object]:
    """Raw JSON-RPC batches over one WebSocket, IN_FLIGHT at once; results in order."""
    results: list[object] = [None] * len(calls)
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        waiting: dict[int, asyncio.Future[list[dict[str, object]]]] = {}

        async def reader() -> None:
            async for raw in ws:
                answers = json.loads(raw)
                first = answers[0]["id"] if isinstance(answers, list) else answers["id"]
                waiting.pop(first // 1_000_000).set_result(
                    answers if isinstance(answers, list) else [answers]
                )

        task = asyncio.create_task(reader())
        gate = asyncio.Semaphore(IN_FLIGHT)
        loop = asyncio.get_running_loop()

        async def send(n: int, start: int) -> None:
            part = calls[start : start + BATCH]
            async with gate:
                future: asyncio.Future[list[dict[str, object]]] = loop.create_future()
                waiting[n] = future
                payload = [
                    {"jsonrpc": "2.0", "id": n * 1_000_000 + i, "method": m, "params": p}
                    for i, (m, p) in enumerate(part)
                ]
                await ws.send(json.dumps(payload))
                answers = await future
            for answer in answers:
                assert "error" not in answer, answer
                results[start + int(answer["id"]) % 1_000_000] = answer["result"]  # type: ignore[call-overload]

        await asyncio.gather(*(send(n, s) for n, s in enumerate(range(0, len(calls), BATCH))))
        task.cancel()
    return results


async def baseline_s(url: str, addresses: list[str], height: int) -> tuple[float, int]:
    block = hex(height)
    started = time.perf_counter()
    answers = await _ws_batches(url, [("eth_getBalance", [a, block]) for a in addresses])
    elapsed = time.perf_counter() - started
    return elapsed, sum(int(str(a), 16) for a in answers)


async def seed(dsn: str, anvil: Anvil, n: int) -> tuple[list[str], int]:
    """N paid invoices with their custody booked, and the same balances on chain."""
    addresses = ["0x" + secrets.token_hex(20) for _ in range(n)]
    amounts = [10**15 + i for i in range(n)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO merchants (id, display_name) VALUES ('bench', 'Bench')")
        later = datetime.now(UTC) + timedelta(days=1)
        await conn.copy_records_to_table(
            "invoices",
            columns=[
                "id",
                "merchant_id",
                "merchant_order_id",
                "chain",
                "asset",
                "asset_decimals",
                "amount_due",
                "deposit_address",
                "derivation_index",
                "confirmations_required",
                "expire_time",
                "monitoring_end_time",
                "state",
                "amount_received",
            ],
            records=(
                (
                    f"i{i}",
                    "bench",
                    f"o{i}",
                    CHAIN,
                    NATIVE,
                    18,
                    amounts[i],
                    a,
                    i,
                    CONFIRMATIONS,
                    later,
                    later,
                    "paid",
                    amounts[i],
                )
                for i, a in enumerate(addresses)
            ),
        )
        await store.ensure_accounts(
            conn,
            [*accounts.platform_accounts(NATIVE), *accounts.merchant_accounts("bench", NATIVE)],
        )
        now = datetime.now(UTC)
        for start in range(0, n, 1_000):
            batch = [
                Transfer(
                    id=f"bench:{i}",
                    debit_account_id=accounts.custody(NATIVE),
                    credit_account_id=accounts.merchant_account("bench", NATIVE, "incoming"),
                    amount=amounts[i],
                    asset=NATIVE,
                    code=payments.PAYMENT,
                    reference=f"merchants/bench/invoices/i{i}",
                )
                for i in range(start, min(n, start + 1_000))
            ]
            async with conn.transaction():
                outcome = await store.post(conn, batch, now)
            assert all(r.ok for r in outcome.results)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    await _ws_batches(
        anvil.ws_url,
        [("anvil_setBalance", [a, hex(v)]) for a, v in zip(addresses, amounts, strict=True)],
    )
    anvil.mine(CONFIRMATIONS + 2)
    head = anvil.head()
    block = anvil.rpc("eth_getBlockByNumber", hex(head), False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO chain_cursors (chain, height, hash) VALUES ($1, $2, $3)",
            CHAIN,
            head,
            block["hash"],
        )
    finally:
        await conn.close()
    return addresses, sum(amounts)


async def touch(dsn: str, anvil: Anvil, addresses: list[str], k: int, round_: int) -> list[int]:
    """One more wei at K addresses, on chain and in the ledger; blocks mined past
    the confirmations and the core's cursor moved to the head."""
    picked = sorted(secrets.SystemRandom().sample(range(len(addresses)), min(k, len(addresses))))
    conn = await asyncpg.connect(dsn)
    try:
        batch = [
            Transfer(
                id=f"bench:touch:{round_}:{i}",
                debit_account_id=payments.custody(NATIVE),
                credit_account_id=payments.merchant_account("bench", NATIVE, "incoming"),
                amount=1,
                asset=NATIVE,
                code=payments.PAYMENT,
                reference=f"merchants/bench/invoices/i{i}",
            )
            for i in picked
        ]
        async with conn.transaction():
            outcome = await store.post(conn, batch, datetime.now(UTC))
        assert all(r.ok for r in outcome.results)
        balances = await _ws_batches(
            anvil.ws_url, [("eth_getBalance", [addresses[i], "latest"]) for i in picked]
        )
        await _ws_batches(
            anvil.ws_url,
            [
                ("anvil_setBalance", [addresses[i], hex(int(str(b), 16) + 1)])
                for i, b in zip(picked, balances, strict=True)
            ],
        )
        anvil.mine(CONFIRMATIONS + 2)
        head = anvil.head()
        block = anvil.rpc("eth_getBlockByNumber", hex(head), False)
        await conn.execute(
            "UPDATE chain_cursors SET height = $2, hash = $3 WHERE chain = $1",
            CHAIN,
            head,
            block["hash"],
        )
    finally:
        await conn.close()
    return picked


async def run(args: argparse.Namespace, run_dir: Path) -> dict[str, object]:
    cluster = PostgresCluster(run_dir / "pg")
    cluster.start()
    anvil = Anvil(run_dir / "anvil").start()
    adapter, port = start_adapter(run_dir, [anvil.ws_url], [])
    try:
        dsn = cluster.create_database("bench")
        await migrate(dsn)
        t0 = time.perf_counter()
        addresses, total = await seed(dsn, anvil, args.addresses)
        seed_s = time.perf_counter() - t0
        config = parse(
            {
                "database": {"dsn": dsn},
                "hd": {"account_xpub": "unused"},
                "chains": [
                    {"id": CHAIN, "adapter": f"127.0.0.1:{port}", "confirmations": CONFIRMATIONS}
                ],
                "assets": [{"id": NATIVE, "symbol": "ETH", "decimals": 18}],
                # The bench drives the Reconciler in this process: no API is served.
                "server": {"dev_plaintext": True},
                "adapters": {"dev_plaintext": True},
                "secrets": {"webhook_kek_env": "KASSA_BENCH_KEK"},
            },
            run_dir,
        )
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
        assert pool is not None
        # Mutual TLS to the adapter, as the core speaks it.
        ca = certs()
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            grpc.ssl_channel_credentials(
                (ca / "ca.pem").read_bytes(),
                (ca / "core.key").read_bytes(),
                (ca / "core.pem").read_bytes(),
            ),
            options=[
                ("grpc.max_receive_message_length", 64 * 2**20),
                ("grpc.ssl_target_name_override", devcerts.adapter_name(CHAIN)),
            ],
        )

        async def no_hot_key() -> str | None:
            return None

        reconciler = Reconciler(
            pool,
            config,
            ReconcileSettings(),
            {CHAIN: adapter_pb2_grpc.ChainAdapterServiceStub(channel)},
            no_hot_key,
            {},
            lambda: datetime.now(UTC),
        )
        height = anvil.head() - CONFIRMATIONS
        runs_s: list[float] = []
        raw_s: list[float] = []
        compared = 0
        phases: list[dict[str, float]] = []
        for _ in range(args.repeats):
            elapsed, chain_total = await baseline_s(anvil.ws_url, addresses, height)
            assert chain_total == total, (chain_total, total)
            raw_s.append(elapsed)
            started = time.perf_counter()
            run_id = await reconciler.run_once(CHAIN, "bench")
            runs_s.append(time.perf_counter() - started)
            phases.append(dict(reconciler.last_timings_s))
            async with pool.acquire() as conn:
                row = await conn.fetchrow("SELECT * FROM reconciliation_runs WHERE id = $1", run_id)
            assert row is not None and row["unexplained_count"] == 0, dict(row or {})
            assert row["height"] == height
            compared = row["balances_compared"]
        incremental: dict[str, object] = {}
        if args.touched:
            inc_s: list[float] = []
            inc_phases: list[dict[str, float]] = []
            inc_compared = 0
            for r in range(args.repeats):
                touched = await touch(dsn, anvil, addresses, args.touched, r)
                started = time.perf_counter()
                run_id = await reconciler.run_once(CHAIN, "bench", incremental=True)
                inc_s.append(time.perf_counter() - started)
                inc_phases.append(dict(reconciler.last_timings_s))
                async with pool.acquire() as conn:
                    row = await conn.fetchrow(
                        "SELECT * FROM reconciliation_runs WHERE id = $1", run_id
                    )
                assert row is not None and row["incremental"], dict(row or {})
                assert row["unexplained_count"] == 0, dict(row)
                inc_compared = row["balances_compared"]
                assert inc_compared <= 2 * len(touched), (inc_compared, len(touched))
            incremental = {
                "touched": args.touched,
                "incremental_run_s": [round(x, 3) for x in inc_s],
                "incremental_balances_compared": inc_compared,
                "incremental_us_per_touched_address": round(
                    statistics.median(inc_s) / args.touched * 1e6, 2
                ),
                "incremental_phases_s": {
                    k: round(statistics.median(p[k] for p in inc_phases), 3) for k in inc_phases[0]
                },
                "incremental_vs_full_run": round(
                    statistics.median(inc_s) / statistics.median(runs_s), 4
                ),
            }
        await channel.close()
        await pool.close()
        n = len(addresses)
        per_address_us = statistics.median(runs_s) / n * 1e6
        raw_us = statistics.median(raw_s) / n * 1e6
        return {
            "bench": "reconcile",
            "value": round(per_address_us, 2),
            "unit": "us per deposit address (one reconciliation run, median)",
            "baseline": round(raw_us, 2),
            "ratio": round(per_address_us / raw_us, 2),
            "addresses": n,
            "balances_compared": compared,
            "run_s": [round(x, 2) for x in runs_s],
            "baseline_s": [round(x, 2) for x in raw_s],
            "seed_s": round(seed_s, 1),
            # Median seconds per phase: snapshot SQL, adapter calls, comparison (the rest: store).
            "phases_s": {k: round(statistics.median(p[k] for p in phases), 3) for k in phases[0]},
            "baseline_how": f"raw eth_getBalance batches of {BATCH}, {IN_FLIGHT} in flight, one WebSocket",
            **incremental,
        }
    finally:
        adapter.stop()
        anvil.stop()
        cluster.stop()


def main() -> int:
    os.environ["KASSA_BENCH_KEK"] = new_kek_line("bench")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--touched", type=int, default=1_000, help="addresses an incremental run sees (0: none)"
    )
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-reconcile-"))
    try:
        result = asyncio.run(run(args, run_dir))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
