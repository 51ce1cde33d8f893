"""scripts/bench ingest: one block of 5,000 token transfers, each paying one of
1,000,000 active invoices, applied and committed by the core's block applier
(payments, ledger postings, state changes, outbox events, cursor) in one
transaction. Baseline: a raw COPY of the same number of payment rows, same run.

Each of --rounds rounds applies one such block (to invoices not paid before),
the block that confirms it, the COPY baseline and the floor, seconds apart;
the round with the median block time is reported, and every round.

Also measured in the same run, the floor: the database work such a block
cannot avoid, done by hand with no Kassa logic in one transaction — COPY of
5,000 payments into the real table (its indexes and foreign key), one UPDATE
of 5,000 other invoices (non-HOT: every one of the table's indexes takes a new
entry), 5,000 pending ledger transfers (its indexes and balance trigger) and
10,000 outbox events of the block's own payload sizes.

Also reported: the block that confirms those 5,000 payments (paid, ledger
post and settlement), since that is the other heavy block an invoice sees.

WAL: the cluster runs with the WAL settings docs/operations.md recommends
("PostgreSQL settings", printed with the result): a production OLTP
deployment's checkpoint spacing (`max_wal_size` 8GB, `checkpoint_timeout`
15min) and `wal_writer_delay` 10ms. A CHECKPOINT follows the
1,000,000-invoice load, so every round runs in one checkpoint cycle that
begins before the first block. With the defaults (1GB), a checkpoint fell
every ~540 MB of WAL, about once a round, wherever the load's and the
rounds' WAL put it. A block still logs every page it is first to touch
since that checkpoint whole (a full-page image): each round's WAL is printed
(`block_wal_mb`), and `--checkpoint-each-round` puts a CHECKPOINT before
every paying block, the case of a block that follows a checkpoint (every
page it touches logged whole). `--wal-settings default` gives PostgreSQL's
own settings and no CHECKPOINT, as every run before the sixth round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import uvloop

from core import names
from core.chain.apply import ChainApplier
from core.chain.index import ActiveInvoiceIndex
from core.events import outbox
from core.events.outbox import NewEvent
from core.ledger.accounts import custody, merchant_account, merchant_accounts
from core.ledger.store import ensure_accounts
from core.store.db import create_pool
from core.store.migrate import migrate
from kassa.chain.v1 import adapter_pb2 as chain_pb
from localstack.postgres import PostgresCluster

CHAIN = "eip155:31337"
ASSET = f"{CHAIN}/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
DUE = 25_000_000
# docs/operations.md, "PostgreSQL settings".
WAL_SETTINGS = ("max_wal_size=8GB", "checkpoint_timeout=15min", "wal_writer_delay=10ms")


def block(height: int, transfers: list[chain_pb.Transfer]) -> chain_pb.Block:
    return chain_pb.Block(
        height=height,
        hash=f"0x{height:064x}",
        parent_hash=f"0x{height - 1:064x}",
        transfers=transfers,
    )


async def _auto_explain(dsn: str, min_duration_ms: int) -> None:
    """Every later session of the database logs EXPLAIN (ANALYZE, BUFFERS) of
    its statements slower than min_duration_ms (nested ones too: the ledger's
    trigger). Timing every plan node costs: figures of such a run are not
    comparable with others."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("LOAD 'auto_explain'")
        database = await conn.fetchval("SELECT current_database()")
        for name, value in (
            ("session_preload_libraries", "auto_explain"),
            ("auto_explain.log_min_duration", f"{min_duration_ms}ms"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_buffers", "on"),
            ("auto_explain.log_nested_statements", "on"),
        ):
            await conn.execute(f"ALTER DATABASE \"{database}\" SET {name} = '{value}'")
    finally:
        await conn.close()


async def run(
    dsn: str,
    invoices: int,
    transfers: int,
    confirmations: int,
    rounds: int,
    explain: bool = False,
    checkpoint_each_round: bool = False,
    checkpoint_after_load: bool = True,
) -> dict[str, object]:
    await migrate(dsn)
    if explain:
        await _auto_explain(dsn, 5)
    pool = await create_pool(dsn, max_size=4)
    now = datetime.now(UTC)
    rng = random.Random(7)
    ids = [secrets.token_hex(10) for _ in range(invoices)]
    addresses = ["0x" + rng.randbytes(20).hex() for _ in range(invoices)]
    # COPY speaks binary; the pool's numeric-as-text codec has no binary form, so a plain connection.
    raw = await asyncpg.connect(dsn)
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO merchants (id, display_name) VALUES ('bench', 'Bench')")
        started = time.perf_counter()
        await raw.copy_records_to_table(
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
            ],
            records=[
                (
                    ids[i],
                    "bench",
                    f"o{i}",
                    CHAIN,
                    ASSET,
                    6,
                    Decimal(DUE),
                    addresses[i],
                    i,
                    confirmations,
                    now + timedelta(hours=1),
                    now + timedelta(days=1),
                    "awaiting_payment",
                )
                for i in range(invoices)
            ],
        )
        load_s = time.perf_counter() - started
        await conn.execute("ANALYZE")
        index = ActiveInvoiceIndex()
        started = time.perf_counter()
        await index.load(conn)
        index_s = time.perf_counter() - started
    applier = ChainApplier(pool, CHAIN, index, lambda: now)
    await applier.apply_block(block(1, []))
    if checkpoint_after_load:
        # The rounds start a checkpoint cycle (module docstring): none falls
        # inside a round, and none that the load's WAL started runs beside them.
        await raw.execute("CHECKPOINT")
    # The bench's own 1,000,000-entry lists (ids, addresses) are not the core's
    # state, but every full collection of the cyclic GC traverses them: the one
    # a block's end lets run (the applier pauses the collector for the block)
    # added up to ~120 ms to the block's time; a full collection took 84 ms
    # with three such lists alive against 18 ms over the core's own objects
    # (the applier, its index, asyncpg, protobuf), on one 1,000,000-invoice
    # database. Frozen, they are left out of every collection.
    gc.collect()
    gc.freeze()
    # Disjoint invoices for every round's block and floor.
    chosen = rng.sample(range(invoices), 2 * rounds * transfers)
    height = 1
    results: list[dict[str, float]] = []
    written = 0
    for r in range(rounds):
        paying = chosen[2 * r * transfers : (2 * r + 1) * transfers]
        others = [ids[i] for i in chosen[(2 * r + 1) * transfers : (2 * r + 2) * transfers]]
        payload = [
            chain_pb.Transfer(
                tx_hash="0x" + rng.randbytes(32).hex(),
                index=1,
                asset=ASSET,
                from_address="0x" + rng.randbytes(20).hex(),
                to_address=addresses[i],
                amount=str(DUE),
                success=True,
                log_index=n,
            )
            for n, i in enumerate(paying)
        ]
        height += 1
        message = block(height, payload).SerializeToString()
        if checkpoint_each_round:
            await raw.execute("CHECKPOINT")
        wal_before = await raw.fetchval("SELECT pg_current_wal_lsn()")
        started = time.perf_counter()
        written += await applier.apply_block(chain_pb.Block.FromString(message))
        detect_s = time.perf_counter() - started
        wal_bytes = await raw.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", wal_before
        )
        for _ in range(confirmations - 2):
            height += 1
            await applier.apply_block(block(height, []))
        height += 1
        started = time.perf_counter()
        written += await applier.apply_block(block(height, []))
        confirm_s = time.perf_counter() - started
        copy_s, rows = await _copy_baseline(raw, r, payload, [ids[i] for i in paying], now)
        floor_s, parts = await _floor(raw, others, rng, now, rows, transfers)
        results.append(
            {
                "detect": detect_s,
                "confirm": confirm_s,
                "copy": copy_s,
                "floor": floor_s,
                "wal_mb": float(wal_bytes) / 1e6,
                **parts,
            }
        )
    paid = await raw.fetchval("SELECT count(*) FROM invoices WHERE state = 'paid'")
    await raw.close()
    await pool.close()
    assert paid == rounds * transfers, f"expected {rounds * transfers} paid, found {paid}"
    # The round with the median block time; each ratio is of figures seconds apart.
    mid = sorted(results, key=lambda x: x["detect"])[len(results) // 2]
    return {
        "bench": "ingest",
        "value": round(mid["detect"], 3),
        "unit": f"s ({transfers:,}-transfer block applied and committed; median of {rounds})",
        "baseline": round(mid["copy"], 3),
        "ratio": round(mid["detect"] / mid["copy"], 1),
        "floor": round(mid["floor"], 3),
        "ratio_to_floor": round(mid["detect"] / mid["floor"], 1),
        "confirm_block_s": round(mid["confirm"], 3),
        "rounds": [
            {
                "block_s": round(x["detect"], 3),
                "copy_s": round(x["copy"], 3),
                "ratio": round(x["detect"] / x["copy"], 1),
                "floor_s": round(x["floor"], 3),
                "ratio_to_floor": round(x["detect"] / x["floor"], 1),
                "floor_parts_s": {
                    k: round(x[k], 3)
                    for k in ("payments", "invoices", "ledger", "events", "commit")
                },
                "confirm_block_s": round(x["confirm"], 3),
                "block_wal_mb": round(x["wal_mb"], 1),
            }
            for x in results
        ],
        "events_written": written,
        "active_invoices": invoices,
        "transfers": transfers,
        "invoice_load_s": round(load_s, 1),
        "index_load_s": round(index_s, 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


_PAYMENT_COLUMNS = [
    "chain",
    "tx_hash",
    "transfer_index",
    "invoice_id",
    "asset",
    "from_address",
    "to_address",
    "amount",
    "block_height",
    "block_hash",
    "status",
    "confirm_height",
    "first_seen_time",
    "update_time",
    "inclusions",
    "counted",
]


async def _copy_baseline(
    raw: asyncpg.Connection,
    round_: int,
    payload: list[chain_pb.Transfer],
    invoice_ids: list[str],
    now: datetime,
) -> tuple[float, list[tuple[object, ...]]]:
    """The baseline: the block's payment rows, raw COPY into a table without
    indexes or constraints, one transaction."""
    table = f"copy_baseline_{round_}"
    await raw.execute(f"CREATE TABLE {table} (LIKE payments)")
    rows: list[tuple[object, ...]] = [
        (
            CHAIN,
            t.tx_hash,
            t.index,
            invoice_id,
            ASSET,
            t.from_address,
            t.to_address,
            Decimal(DUE),
            2,
            "0x" + "00" * 32,
            "confirming",
            4,
            now,
            now,
            1,
            True,
        )
        for t, invoice_id in zip(payload, invoice_ids, strict=True)
    ]
    started = time.perf_counter()
    async with raw.transaction():
        await raw.copy_records_to_table(table, records=rows, columns=_PAYMENT_COLUMNS)
    return time.perf_counter() - started, rows


async def _floor(
    raw: asyncpg.Connection,
    others: list[str],
    rng: random.Random,
    now: datetime,
    payment_rows: Sequence[tuple[object, ...]],
    transfers: int,
) -> tuple[float, dict[str, float]]:
    """The same writes as the block, by hand, on invoices no block paid."""
    # The block's payment rows, each to another invoice under a new transaction
    # hash, confirming at a height no later round reaches (the applier must not
    # meet them), in the floor's own ledger accounts.
    payments = [
        (row[0], "0x" + rng.randbytes(32).hex(), row[2], invoice_id, *row[4:11], 2**62, *row[12:])
        for invoice_id, row in zip(others, payment_rows, strict=True)
    ]
    await ensure_accounts(raw, merchant_accounts("floor", ASSET))
    debit, credit = custody(ASSET), merchant_account("floor", ASSET, "incoming")
    ledger = [
        (
            f"floor:{secrets.token_hex(8)}:{n}",
            debit,
            credit,
            Decimal(DUE),
            ASSET,
            1,
            2,
            now,
            "bench",
        )
        for n in range(transfers)
    ]
    payloads = [
        r["payload"]
        for r in await raw.fetch(
            "SELECT payload FROM events ORDER BY sequence DESC LIMIT $1", 2 * transfers
        )
    ]
    async with raw.transaction():
        # Sequences taken as the outbox takes them (its row lock held to commit).
        last = await raw.fetchval(
            "UPDATE event_sequence SET last = last + $1 WHERE id = 1 RETURNING last", len(payloads)
        )
    first = last - len(payloads) + 1
    # Ids as the outbox makes them (time-ordered: appended at the right edge
    # of events_id_key) and resource names as the block's (two events for
    # each of its invoices: random keys of events_by_resource), so the floor's
    # four index insertions per event cost what the block's do.
    events = outbox.rows(
        first,
        [
            NewEvent(
                "invoice.detected", "bench", names.invoice("bench", others[n // 2 % len(others)]), p
            )
            for n, p in enumerate(payloads)
        ],
    )
    parts: dict[str, float] = {}
    started = time.perf_counter()
    async with raw.transaction():
        mark = time.perf_counter()
        await raw.copy_records_to_table("payments", records=payments, columns=_PAYMENT_COLUMNS)
        parts["payments"], mark = time.perf_counter() - mark, time.perf_counter()
        await raw.execute(
            """UPDATE invoices i SET state = 'confirming', amount_pending = u.amount,
                                     update_time = now()
                 FROM unnest($1::text[], $2::numeric[]) AS u(id, amount) WHERE i.id = u.id""",
            others,
            [Decimal(DUE)] * len(others),
        )
        parts["invoices"], mark = time.perf_counter() - mark, time.perf_counter()
        await raw.copy_records_to_table(
            "ledger_transfers",
            records=ledger,
            columns=[
                "id",
                "debit_account_id",
                "credit_account_id",
                "amount",
                "asset",
                "code",
                "flags",
                "create_time",
                "reference",
            ],
        )
        parts["ledger"], mark = time.perf_counter() - mark, time.perf_counter()
        await raw.copy_records_to_table("events", records=events, columns=outbox.COLUMNS)
        parts["events"], mark = time.perf_counter() - mark, time.perf_counter()
    parts["commit"] = time.perf_counter() - mark
    return time.perf_counter() - started, parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--transfers", type=int, default=5_000)
    parser.add_argument("--confirmations", type=int, default=3)
    parser.add_argument(
        "--explain",
        type=Path,
        help="write EXPLAIN (ANALYZE, BUFFERS) of every statement over 5 ms (auto_explain) "
        "to this file; slows the run: its figures are not comparable",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the event loop the applier runs on: uvloop, as in the core's process "
        "(core/main.py), or asyncio's own, for comparison",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="blocks measured, each beside its own baseline and floor (median reported)",
    )
    parser.add_argument(
        "--wal-settings",
        choices=("production", "default"),
        default="production",
        help="production: max_wal_size 8GB, checkpoint_timeout 15min, wal_writer_delay 10ms "
        "and a CHECKPOINT after the load (module docstring); default: PostgreSQL's own "
        "(1GB, 5min, 200ms) and no "
        "CHECKPOINT, as every run before the sixth round (2026-12-01)",
    )
    parser.add_argument(
        "--checkpoint-each-round",
        action="store_true",
        help="a CHECKPOINT before every paying block: each block logs every page it "
        "touches whole (full-page images), as the first blocks after a checkpoint do",
    )
    parser.add_argument(
        "--shared-buffers",
        default="2GB",
        help="the cluster's shared_buffers (wal_buffers 64MB beside it unless 256MB, "
        "the test clusters' size, which the runs before 2026-12-01 used)",
    )
    args = parser.parse_args()
    # The block's payments confirm in a later block (heights are consecutive).
    assert args.confirmations >= 2, "--confirmations must be at least 2"
    base = Path(tempfile.mkdtemp(prefix="kassa-bench-ingest-"))
    # Why 2GB: 1,000,000 invoices with their indexes are ~710 MB, the block
    # touches 5,000 random rows of them; at the test clusters' 256 MB the lock
    # read pages in and backends evicted dirty ones themselves, ~0.1-0.15 s
    # of backend CPU a block more than at 2GB (docs/performance.md, Ingest).
    # A production cluster is sized for its working set; the COPY baseline and
    # the floor run on the same cluster, so every figure of a run shares it.
    settings: tuple[str, ...] = (f"shared_buffers={args.shared_buffers}",)
    if args.shared_buffers != "256MB":
        settings += ("wal_buffers=64MB",)
    # Why these WAL settings, and what they do not hide: the module docstring
    # and docs/operations.md ("PostgreSQL settings", with the measurements).
    production = args.wal_settings == "production"
    if production:
        settings += WAL_SETTINGS
    cluster = PostgresCluster(base / "pg", settings=settings)
    try:
        dsn = cluster.start()
        # The core's serving process runs on uvloop (core/main.py), as asyncpg
        # recommends, so the block is measured on it (`--loop asyncio` for the
        # figure on asyncio's own loop; docs/performance.md has both).
        loop_factory = uvloop.new_event_loop if args.loop == "uvloop" else None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(
                run(
                    dsn,
                    args.invoices,
                    args.transfers,
                    args.confirmations,
                    args.rounds,
                    args.explain is not None,
                    args.checkpoint_each_round,
                    production,
                )
            )
        result["loop"] = args.loop
        result["shared_buffers"] = args.shared_buffers
        result["settings"] = list(settings)
        result["wal_settings"] = args.wal_settings
        result["checkpoint_each_round"] = args.checkpoint_each_round
    finally:
        cluster.stop()
        if args.explain is not None and cluster.log_file.exists():
            shutil.copyfile(cluster.log_file, args.explain)
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
