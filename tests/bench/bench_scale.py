"""scripts/bench scale: CreateInvoice throughput with 1, 2 and 3 core replicas,
against the empty-RPC rate, and block-apply throughput with 1 and 3 replicas.

The whole stack runs as separate processes (PostgreSQL, anvil, EVM adapter,
core replicas with TLS on the API). Load comes from CLIENT_PROCESSES client
processes with CLIENTS concurrent callers each, spread round-robin over the
running replicas. The baseline is the empty-RPC rate of one replica (gRPC
health Check over the same TLS channel: the server's floor cost per call),
measured in the same run. Block apply: BLOCKS empty blocks mined at once,
timed until the stored cursor reaches the head (the chain's one leader applies
them, whatever the number of replicas).

  scripts/bench scale [--seconds S] [--clients C] [--blocks N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import asyncpg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.clients import ApiTls, api_aio_channel
from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
from localstack.fullstack import LocalStack
from localstack.replicas import Replicas, leadership_options

CLIENT_PROCESSES = 2


async def _clients_async(
    targets: list[str],
    ca: bytes,
    token: str,
    kind: str,
    seconds: float,
    clients: int,
    tag: str,
    asset: str,
) -> tuple[int, float]:
    metadata = (("authorization", f"Bearer {token}"),)
    tls = ApiTls(ca=ca)
    channels = [api_aio_channel(t, tls) for t in targets]
    done = 0
    try:
        invoices = [invoice_pb2_grpc.InvoiceServiceStub(c) for c in channels]
        healths = [health_pb2_grpc.HealthStub(c) for c in channels]

        async def client(c: int) -> None:
            nonlocal done
            i = 0
            while time.perf_counter() < deadline:
                k = (c + i) % len(targets)
                if kind == "empty":
                    await healths[k].Check(health_pb2.HealthCheckRequest())
                else:
                    await invoices[k].CreateInvoice(
                        invoice_pb2.CreateInvoiceRequest(
                            parent="merchants/bench",
                            merchant_order_id=f"{tag}-{c}-{i}",
                            asset=asset,
                            price=invoice_pb2.FiatAmount(amount="1.00", currency="USD"),
                        ),
                        metadata=metadata,
                    )
                i += 1
                done += 1

        for k in range(len(targets)):  # warm up every channel (TLS, auth cache)
            await healths[k].Check(health_pb2.HealthCheckRequest())
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(client(c) for c in range(clients)))
        return done, time.perf_counter() - start
    finally:
        for c in channels:
            await c.close()


def _clients(
    targets: list[str],
    ca: bytes,
    token: str,
    kind: str,
    seconds: float,
    clients: int,
    tag: str,
    asset: str,
) -> tuple[int, float]:
    return asyncio.run(_clients_async(targets, ca, token, kind, seconds, clients, tag, asset))


def _rate(
    executor: ProcessPoolExecutor,
    targets: list[str],
    ca: bytes,
    token: str,
    kind: str,
    seconds: float,
    clients: int,
    tag: str,
    asset: str,
) -> float:
    futures = [
        executor.submit(_clients, targets, ca, token, kind, seconds, clients, f"{tag}{k}", asset)
        for k in range(CLIENT_PROCESSES)
    ]
    return sum(done / elapsed for done, elapsed in (f.result() for f in futures))


def _cursor(dsn: str, chain: str) -> int:
    async def read() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(
                await conn.fetchval("SELECT height FROM chain_cursors WHERE chain = $1", chain) or 0
            )
        finally:
            await conn.close()

    return asyncio.run(read())


def _apply_rate(stack: LocalStack, blocks: int) -> float:
    """Blocks/s from anvil_mine(blocks) until the cursor reaches the head."""
    chain = stack.chains[0]
    chain.anvil.mine(1)
    head = chain.anvil.head()
    deadline = time.monotonic() + 60
    while _cursor(stack.dsn, chain.chain) < head:
        assert time.monotonic() < deadline, "the follower never caught up"
        time.sleep(0.05)
    start = time.perf_counter()
    chain.anvil.mine(blocks)
    target = head + blocks
    while _cursor(stack.dsn, chain.chain) < target:
        assert time.perf_counter() - start < 300, "the follower fell behind"
        time.sleep(0.02)
    return blocks / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench scale")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16, help="callers per client process")
    parser.add_argument("--blocks", type=int, default=300)
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-scale-"))
    stack = LocalStack(run_dir, block_time_s=None, core_options=leadership_options(3.0))
    replicas: Replicas | None = None
    try:
        stack.start_all(signer=False)
        replicas = Replicas(stack, 3)
        setup = stack.core_setup()
        token = setup.merchant_token("bench")
        ca = setup.ca_file.read_bytes()
        asset = stack.token_asset
        targets = [s.target for s in replicas.setups]
        rates: dict[str, float] = {}
        apply: dict[str, float] = {}
        with ProcessPoolExecutor(CLIENT_PROCESSES, mp_context=mp.get_context("spawn")) as ex:

            def measure(kind: str, n: int, tag: str) -> float:
                return _rate(
                    ex, targets[:n], ca, token, kind, args.seconds, args.clients, tag, asset
                )

            _rate(ex, targets[:1], ca, token, "create", 2.0, 2, "w1", asset)  # warm-up
            empty_1 = measure("empty", 1, "e1")
            rates["1"] = measure("create", 1, "c1")
            apply["1"] = _apply_rate(stack, args.blocks)
            for n in (2, 3):
                replicas.start(n - 1)
                # Warm the new replica (pool, key cache, address derivation) untimed.
                _rate(ex, [targets[n - 1]], ca, token, "create", 2.0, 2, f"w{n}", asset)
                rates[str(n)] = measure("create", n, f"c{n}")
            empty_3 = measure("empty", 3, "e3")
            apply["3"] = _apply_rate(stack, args.blocks)
        result = {
            "bench": "scale",
            "value": round(rates["3"], 1),
            "unit": "CreateInvoice/s with 3 replicas",
            "create_invoice_per_s": {k: round(v, 1) for k, v in rates.items()},
            "baseline": round(empty_1, 1),
            "baseline_unit": "empty RPC/s (health Check) on 1 replica",
            "empty_rpc_per_s_3_replicas": round(empty_3, 1),
            "ratio": round(rates["1"] / empty_1, 3),
            "scaling_3_over_1": round(rates["3"] / rates["1"], 3),
            "block_apply_per_s": {k: round(v, 1) for k, v in apply.items()},
            "clients": CLIENT_PROCESSES * args.clients,
            "seconds": args.seconds,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(result))
    finally:
        if replicas is not None:
            replicas.stop_others()
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
