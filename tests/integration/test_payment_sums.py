"""The block applier decides invoices from sums folded in Python over the
payment rows it reads once (core/payments/store.py `sums`). Against real
PostgreSQL: on random payments, the fold gives exactly what the aggregating
statement it replaced gave."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.payments import store as payments
from core.render import invoices as render
from tests.support.ledger import add_merchant, migrated_pool

CHAIN = "eip155:31337"
ASSET = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
NOW = datetime(2026, 1, 10, tzinfo=UTC)

# The statement the fold replaced, verbatim but for its name.
_SQL_SUMS = """
WITH i AS MATERIALIZED (
    SELECT id, expire_time, monitoring_end_time FROM invoices WHERE id = ANY($1::text[])
)
SELECT p.invoice_id,
       coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status = 'pending'), 0) AS pending,
       coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status = 'confirming'), 0) AS confirming,
       coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status = 'confirmed'), 0) AS confirmed,
       coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status <> 'reorged'
                                      AND p.first_seen_time > i.expire_time), 0) AS late,
       coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status <> 'reorged'
                                      AND p.first_seen_time > i.monitoring_end_time), 0) AS outside,
       count(*) FILTER (WHERE NOT p.counted AND p.status <> 'reorged') AS wrong_asset
  FROM payments p JOIN i ON i.id = p.invoice_id
 WHERE p.invoice_id = ANY($1::text[]) GROUP BY p.invoice_id
"""


async def _add_invoice(
    conn: asyncpg.Connection, invoice_id: str, n: int, expire: datetime, monitoring_end: datetime
) -> None:
    await conn.execute(
        """INSERT INTO invoices (id, merchant_id, merchant_order_id, chain, asset,
               asset_decimals, amount_due, deposit_address, derivation_index,
               confirmations_required, expire_time, monitoring_end_time, state)
           VALUES ($1, 'acme', $1, $2, $3, 6, 1000, $4, $5, 2, $6, $7,
                   'awaiting_payment')""",
        invoice_id,
        CHAIN,
        ASSET,
        f"0x{n:040x}",
        n,
        expire,
        monitoring_end,
    )


async def _add_payment(
    conn: asyncpg.Connection,
    invoice_id: str,
    tx_hash: str,
    transfer_index: int,
    asset: str,
    amount: int,
    status: str,
    height: int,
    counted: bool,
    first_seen: datetime,
) -> None:
    """A payment row; a pending one has no block yet."""
    mined = status != "pending"
    await conn.execute(
        """INSERT INTO payments (chain, tx_hash, transfer_index, invoice_id,
               asset, from_address, to_address, amount, block_height,
               block_hash, status, confirm_height, counted, first_seen_time)
           VALUES ($1, $2, $3, $4, $5, '0xf', '0xt', $6, $7, $8, $9, $10, $11, $12)""",
        CHAIN,
        tx_hash,
        transfer_index,
        invoice_id,
        asset,
        amount,
        height if mined else None,
        f"0x{height:x}" if mined else None,
        status,
        height + 2 if mined else None,
        counted,
        first_seen,
    )


@pytest.mark.asyncio
async def test_the_fold_equals_the_sql_aggregate_on_random_payments(fresh_dsn: str) -> None:
    rng = random.Random(16)
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "acme", "Acme")
            ids = [f"inv{n}" for n in range(60)]
            for n, invoice_id in enumerate(ids):
                expire = NOW + timedelta(hours=rng.randint(-48, 48))
                await _add_invoice(
                    conn, invoice_id, n, expire, expire + timedelta(hours=rng.randint(0, 48))
                )
                for k in range(rng.randint(0, 6)):
                    await _add_payment(
                        conn,
                        invoice_id,
                        tx_hash=f"0x{n:04x}{k:04x}",
                        transfer_index=k,
                        asset=ASSET,
                        amount=rng.randint(1, 10**30),
                        status=rng.choice(["pending", "confirming", "confirmed", "reorged"]),
                        height=7,
                        counted=rng.random() < 0.8,
                        first_seen=NOW + timedelta(hours=rng.randint(-72, 120)),
                    )
            expected = {i: payments.Sums() for i in ids}
            for r in await conn.fetch(_SQL_SUMS, ids):
                expected[r["invoice_id"]] = payments.Sums(
                    pending=r["pending"],
                    confirming=r["confirming"],
                    confirmed=r["confirmed"],
                    late=r["late"],
                    wrong_asset=r["wrong_asset"],
                    outside=r["outside"],
                )
            invoices = {r["id"]: r for r in await conn.fetch("SELECT * FROM invoices ORDER BY id")}
            rows = await payments.rows_of(conn, ids)
            folded = {i: payments.sums(invoices[i], rows[i]) for i in ids}
        assert folded == expected
        # The draw exercised every part of the sums.
        assert all(
            any(getattr(s, part) for s in expected.values())
            for part in ("pending", "confirming", "confirmed", "late", "outside", "wrong_asset")
        )
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_rows_of_reads_what_its_readers_read_in_each_invoices_order(fresh_dsn: str) -> None:
    """`rows_of` selects only ROW_COLUMNS and sorts across invoices by id first:
    each invoice's rows are still exactly its rows as `SELECT *` read them, in
    the order GetInvoice and the snapshots show (first_seen_time, tx_hash,
    transfer_index, many of them sharing first_seen_time as a block's do), and
    they render and sum the same."""
    rng = random.Random(61)
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "acme", "Acme")
            ids = [f"inv{n:02d}{rng.choice('aB')}" for n in range(40)]
            for n, invoice_id in enumerate(ids):
                await _add_invoice(conn, invoice_id, n, NOW, NOW)
                for k in range(rng.randint(0, 5)):
                    await _add_payment(
                        conn,
                        invoice_id,
                        tx_hash="0x" + rng.randbytes(4).hex() + rng.choice(["", "A", "b", "0"]),
                        transfer_index=rng.randint(0, 3),
                        asset=rng.choice([ASSET, "eip155:1/slip44:60"]),
                        amount=rng.randint(1, 10**30),
                        status=rng.choice(["pending", "confirming", "confirmed", "reorged"]),
                        height=7 + k,
                        counted=rng.random() < 0.8,
                        first_seen=NOW + timedelta(minutes=rng.choice([0, 0, 0, 5])),
                    )
            asked = [*rng.sample(ids, 30), "inv-none"]
            got = await payments.rows_of(conn, asked)
            assert list(got) == asked
            invoices = {r["id"]: r for r in await conn.fetch("SELECT * FROM invoices")}
            for invoice_id in asked:
                full = await conn.fetch(
                    """SELECT * FROM payments WHERE invoice_id = $1
                        ORDER BY first_seen_time, tx_hash, transfer_index""",
                    invoice_id,
                )
                assert [tuple(r.keys()) for r in got[invoice_id]] == [payments.ROW_COLUMNS] * len(
                    full
                )
                assert [dict(r) for r in got[invoice_id]] == [
                    {c: r[c] for c in payments.ROW_COLUMNS} for r in full
                ]
                assert [render.payment(r, 12) for r in got[invoice_id]] == [
                    render.payment(r, 12) for r in full
                ]
                if invoice_id in invoices:
                    assert payments.sums(invoices[invoice_id], got[invoice_id]) == payments.sums(
                        invoices[invoice_id], full
                    )
            assert sum(len(v) for v in got.values()) > 40
    finally:
        await pool.close()
