"""Active-invoice index benchmark: memory per invoice and lookup time at 1,000,000
active invoices, against a plain dict[str, str] of the same data in the same run.

Memory is the tracemalloc delta of building each structure from the same raw
bytes, so each side pays for what it keeps (the dict its key and value str
objects, the index its arena and slots) and nothing the input owns. Lookup
time is per address over a batch of hits and misses in equal parts, through
lookup_many (what the chain applier uses per block) and through lookup().

With --load, also times ActiveInvoiceIndex.load() streaming N active
invoices from a private PostgreSQL (COPY-filled first; slower to set up).

Run from the repo root: .venv/bin/python tests/bench/bench_index.py [--invoices N] [--load]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for extra in ("", "gen", "scripts"):
    sys.path.insert(0, str(ROOT / extra))

import asyncpg  # noqa: E402

from core.chain.index import ActiveInvoiceIndex  # noqa: E402
from core.store.migrate import migrate  # noqa: E402
from localstack.postgres import PostgresCluster  # noqa: E402

GOAL_BYTES = 200
GOAL_LOOKUP_US = 5.0


def measure_bytes(build: Callable[[], object]) -> tuple[object, int]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return built, after - before


def best_us_per_call(run: Callable[[], object], calls: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def row(n: int, address: str, invoice_id: str, later: datetime) -> tuple[object, ...]:
    chain, asset, decimals, due = "eip155:1", "eip155:1/slip44:60", 18, Decimal(1)
    return (
        invoice_id,
        "b",
        str(n),
        chain,
        asset,
        decimals,
        due,
        address,
        n,
        1,
        later,
        later,
        "awaiting_payment",
    )


async def time_load(addresses: list[str], ids: list[str]) -> float:
    """Seconds for index.load() to stream every row from a real PostgreSQL."""
    with tempfile.TemporaryDirectory(prefix="kassa-bench-index-") as tmp:
        cluster = PostgresCluster(Path(tmp) / "pg")
        cluster.start()
        try:
            dsn = cluster.create_database("bench")
            await migrate(dsn)
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("INSERT INTO merchants (id, display_name) VALUES ('b', 'B')")
                later = datetime.now(UTC) + timedelta(hours=1)
                columns = ["id", "merchant_id", "merchant_order_id", "chain", "asset"]
                columns += ["asset_decimals", "amount_due", "deposit_address", "derivation_index"]
                columns += ["confirmations_required", "expire_time", "monitoring_end_time", "state"]
                await conn.copy_records_to_table(
                    "invoices",
                    columns=columns,
                    records=(
                        row(n, a, i, later)
                        for n, (a, i) in enumerate(zip(addresses, ids, strict=True))
                    ),
                )
                await conn.execute("ANALYZE invoices")
                index = ActiveInvoiceIndex()
                started = time.perf_counter()
                loaded = await index.load(conn)
                load_s = time.perf_counter() - started
                assert loaded == len(index) == len(addresses)
                assert index.lookup(addresses[-1]) == ids[-1]
                return load_s
            finally:
                await conn.close()
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--load", action="store_true", help="also time load() from PostgreSQL")
    args = parser.parse_args()
    n = args.invoices
    rng = random.Random(7)
    raw_addrs = [rng.randbytes(20) for _ in range(n)]
    raw_ids = [rng.randbytes(10) for _ in range(n)]

    def build_index() -> ActiveInvoiceIndex:
        index = ActiveInvoiceIndex()
        for a, i in zip(raw_addrs, raw_ids, strict=True):
            index.add("0x" + a.hex(), i.hex())
        return index

    def build_dict() -> dict[str, str]:
        return {"0x" + a.hex(): i.hex() for a, i in zip(raw_addrs, raw_ids, strict=True)}

    started = time.perf_counter()
    index, index_bytes = measure_bytes(build_index)
    build_s = time.perf_counter() - started
    assert isinstance(index, ActiveInvoiceIndex) and len(index) == n
    baseline, dict_bytes = measure_bytes(build_dict)
    assert isinstance(baseline, dict)

    lookups = min(n, 1_000_000)
    hits = ["0x" + a.hex() for a in rng.sample(raw_addrs, lookups // 2)]
    misses = ["0x" + rng.randbytes(20).hex() for _ in range(lookups - len(hits))]
    probe = hits + misses
    rng.shuffle(probe)

    # Correctness on the benchmark data itself, before timing it.
    expected = [baseline.get(a) for a in probe]
    assert index.lookup_many(probe) == expected

    batch = 5000  # one ingest block's transfers
    chunks = [probe[i : i + batch] for i in range(0, len(probe), batch)]
    many_us = best_us_per_call(lambda: [index.lookup_many(c) for c in chunks], len(probe))
    single = index.lookup
    single_us = best_us_per_call(lambda: [single(a) for a in probe], len(probe))
    get = baseline.get
    dict_us = best_us_per_call(lambda: [get(a) for a in probe], len(probe))

    load_s = None
    if args.load:
        del baseline, probe, expected, chunks
        load_s = asyncio.run(
            time_load(["0x" + a.hex() for a in raw_addrs], [i.hex() for i in raw_ids])
        )

    bytes_per_invoice = index_bytes / n
    dict_bytes_per_invoice = dict_bytes / n
    print(
        f"invoices            {n:,}  (index built in {build_s:.1f} s under tracemalloc, which slows each allocation)"
    )
    print(f"index               {bytes_per_invoice:7.1f} B/invoice  (goal <= {GOAL_BYTES})")
    print(f"dict[str, str]      {dict_bytes_per_invoice:7.1f} B/invoice")
    print(f"lookup_many         {many_us:7.3f} us/address  (goal <= {GOAL_LOOKUP_US})")
    print(f"lookup              {single_us:7.3f} us/address")
    print(f"dict.get            {dict_us:7.3f} us/address")
    if load_s is not None:
        print(f"load() from PG      {load_s:7.2f} s for {n:,} rows")
    print(
        json.dumps(
            {
                "bench": "index",
                "value": round(bytes_per_invoice, 1),
                "unit": "bytes/invoice",
                "baseline": round(dict_bytes_per_invoice, 1),
                "ratio": round(bytes_per_invoice / dict_bytes_per_invoice, 3),
                "bytes_per_invoice": round(bytes_per_invoice, 1),
                "lookup_us": round(many_us, 3),
                "single_lookup_us": round(single_us, 3),
                "baseline_lookup_us": round(dict_us, 3),
                "invoices": n,
                "load_s": None if load_s is None else round(load_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
