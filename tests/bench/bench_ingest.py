"""scripts/bench ingest: one block of 5,000 token transfers, each paying one of
1,000,000 active invoices, applied and committed by the core's block applier
(payments, ledger postings, state changes, outbox events, cursor) in one
transaction. Baseline: a raw COPY of the same number of payment rows, same run.

Also measured in the same run, the floor: the database work such a block
cannot avoid, done by hand with no Kassa logic in one transaction — COPY of
5,000 payments into the real table (its indexes and foreign key), one UPDATE
of 5,000 other invoices (non-HOT: every one of the table's indexes takes a new
entry), 5,000 pending ledger transfers (its indexes and balance trigger) and
10,000 outbox events of the block's own payload sizes.

Also reported: the block that confirms those 5,000 payments (paid, ledger
post and settlement), since that is the other heavy block an invoice sees.
"""

from __future__ import annotations

import argparse
import asyncio
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

from core.chain.apply import ChainApplier
from core.chain.index import ActiveInvoiceIndex
from core.ledger.accounts import custody, merchant_account
from core.store.db import create_pool
from core.store.migrate import migrate
from kassa.chain.v1 import adapter_pb2 as chain_pb
from localstack.postgres import PostgresCluster

CHAIN = "eip155:31337"
ASSET = f"{CHAIN}/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
DUE = 25_000_000


def block(height: int, transfers: list[chain_pb.Transfer]) -> chain_pb.Block:
    return chain_pb.Block(
        height=height,
        hash=f"0x{height:064x}",
        parent_hash=f"0x{height - 1:064x}",
        transfers=transfers,
    )


async def run(dsn: str, invoices: int, transfers: int, confirmations: int) -> dict[str, object]:
    await migrate(dsn)
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
    paying = rng.sample(range(invoices), transfers)
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
    message = block(2, payload).SerializeToString()
    started = time.perf_counter()
    written = await applier.apply_block(chain_pb.Block.FromString(message))
    detect_s = time.perf_counter() - started
    for height in range(3, 2 + confirmations - 1):
        await applier.apply_block(block(height, []))
    started = time.perf_counter()
    confirmed_events = await applier.apply_block(block(2 + confirmations - 1, []))
    confirm_s = time.perf_counter() - started

    await raw.execute("CREATE TABLE copy_baseline (LIKE payments)")
    # The baseline: the same rows, raw COPY, one transaction.
    rows = [
        (
            CHAIN,
            t.tx_hash,
            t.index,
            ids[i],
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
        for t, i in zip(payload, paying, strict=True)
    ]
    columns = [
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
    started = time.perf_counter()
    async with raw.transaction():
        await raw.copy_records_to_table("copy_baseline", records=rows, columns=columns)
    copy_s = time.perf_counter() - started
    paid = await raw.fetchval("SELECT count(*) FROM invoices WHERE state = 'paid'")
    floor_s, floor_parts = await _floor(raw, ids, paying, rng, now, rows, columns, transfers)
    await raw.close()
    await pool.close()
    assert paid == transfers, f"expected {transfers} paid invoices, found {paid}"
    return {
        "bench": "ingest",
        "value": round(detect_s, 3),
        "unit": f"s ({transfers:,}-transfer block applied and committed)",
        "baseline": round(copy_s, 3),
        "ratio": round(detect_s / copy_s, 1),
        "floor": round(floor_s, 3),
        "ratio_to_floor": round(detect_s / floor_s, 1),
        "floor_parts_s": {k: round(v, 3) for k, v in floor_parts.items()},
        "confirm_block_s": round(confirm_s, 3),
        "events_written": written + confirmed_events,
        "active_invoices": invoices,
        "transfers": transfers,
        "invoice_load_s": round(load_s, 1),
        "index_load_s": round(index_s, 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


async def _floor(
    raw: asyncpg.Connection,
    ids: list[str],
    paying: list[int],
    rng: random.Random,
    now: datetime,
    payment_rows: Sequence[tuple[object, ...]],
    payment_columns: list[str],
    transfers: int,
) -> tuple[float, dict[str, float]]:
    """The same writes as the block, by hand, on invoices the block did not pay."""
    paid = set(paying)
    others = [ids[i] for i in rng.sample(range(len(ids)), 2 * transfers) if i not in paid]
    others = others[:transfers]
    # The block's payment rows, each to another invoice under a new transaction hash.
    payments = [
        (row[0], "0x" + rng.randbytes(32).hex(), row[2], invoice_id, *row[4:])
        for invoice_id, row in zip(others, payment_rows, strict=False)
    ]
    debit, credit = custody(ASSET), merchant_account("bench", ASSET, "incoming")
    ledger = [
        (f"floor:{n}", debit, credit, Decimal(DUE), ASSET, 1, 2, now, "bench")
        for n in range(transfers)
    ]
    payloads = [
        r["payload"] for r in await raw.fetch("SELECT payload FROM events LIMIT $1", 2 * transfers)
    ]
    last = await raw.fetchval("SELECT last FROM event_sequence WHERE id = 1")
    events = [
        (
            last + 1 + n,
            secrets.token_hex(16),
            "invoice.detected",
            "bench",
            f"floor/{n}",
            "invoice",
            p,
        )
        for n, p in enumerate(payloads)
    ]
    parts: dict[str, float] = {}
    started = time.perf_counter()
    async with raw.transaction():
        mark = time.perf_counter()
        await raw.copy_records_to_table("payments", records=payments, columns=payment_columns)
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
        await raw.copy_records_to_table(
            "events",
            records=events,
            columns=[
                "sequence",
                "id",
                "type",
                "merchant_id",
                "resource_name",
                "resource_type",
                "payload",
            ],
        )
        parts["events"], mark = time.perf_counter() - mark, time.perf_counter()
    parts["commit"] = time.perf_counter() - mark
    return time.perf_counter() - started, parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--transfers", type=int, default=5_000)
    parser.add_argument("--confirmations", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kassa-bench-ingest-"))
    cluster = PostgresCluster(base / "pg")
    try:
        dsn = cluster.start()
        result = asyncio.run(run(dsn, args.invoices, args.transfers, args.confirmations))
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
