"""Funds past an invoice's late-payment window, against real PostgreSQL: the
chain applier records them, the invoice stays expired with them parked
(flagged, announced, refundable), the ledger holds them in incoming, and a
reorg announces their leaving (issue 19)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.chain.apply import ChainApplier
from core.chain.index import ActiveInvoiceIndex
from core.invoices import lifecycle
from core.ledger import accounts, store
from kassa.chain.v1 import adapter_pb2 as chain_pb
from tests.support.kassactl import ledger_check
from tests.support.ledger import add_merchant, block, migrated_pool

CHAIN = "eip155:31337"
ASSET = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
ADDRESS = "0x00000000000000000000000000000000000000e1"
NOW = datetime(2026, 1, 10, tzinfo=UTC)
DUE = 25_000_000


@pytest.mark.asyncio
async def test_funds_past_the_window_are_recorded_parked_announced_and_refundable(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "acme", "Acme")
            # Expired a week ago; its late window closed six days ago.
            await conn.execute(
                """INSERT INTO invoices (id, merchant_id, merchant_order_id, chain, asset,
                       asset_decimals, amount_due, deposit_address, derivation_index,
                       confirmations_required, expire_time, monitoring_end_time, state)
                   VALUES ('old1', 'acme', 'o1', $1, $2, 6, $3, $4, 1, 2, $5, $6, 'expired')""",
                CHAIN,
                ASSET,
                DUE,
                ADDRESS,
                NOW - timedelta(days=7),
                NOW - timedelta(days=6),
            )
            index = ActiveInvoiceIndex()
            assert await index.load(conn) == 1  # still watched, long after its window
        applier = ChainApplier(pool, CHAIN, index, lambda: NOW)
        pay = chain_pb.Transfer(
            tx_hash="0xlate",
            index=1,
            asset=ASSET,
            from_address="0xabc",
            to_address=ADDRESS,
            amount=str(DUE),
            success=True,
        )
        await applier.apply_block(block(1, "a", [pay]))
        await applier.apply_block(block(2, "a", []))  # 2 confirmations

        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM invoices WHERE id = 'old1'")
            events = [
                r["type"]
                for r in await conn.fetch(
                    "SELECT type FROM events WHERE resource_name LIKE '%/old1' ORDER BY sequence"
                )
            ]
            incoming = accounts.merchant_account("acme", ASSET, "incoming")
            available = accounts.merchant_account("acme", ASSET, "available")
            balances = await store.get_accounts(conn, [incoming, available])
        assert row["state"] == "expired"
        assert "paid_late" in row["flags"]
        assert (row["amount_received"], row["amount_late"], row["amount_outside"]) == (
            DUE,
            DUE,
            DUE,
        )
        assert lifecycle.refundable_of(row) == DUE
        # Announced when seen and again when confirmed (refundable from then on).
        assert events == ["invoice.late_funds", "invoice.late_funds"]
        # Parked in incoming: posted there, never settled to the merchant's available.
        assert balances[incoming].balances.credits_posted == DUE
        assert available not in balances or balances[available].balances.credits_posted == 0

        # A reorg that takes the payment away is announced too; the state stays.
        await applier.apply_undo(
            chain_pb.Undo(to_cursor=chain_pb.BlockCursor(height=0, hash="0xgenesis"), from_height=2)
        )
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM invoices WHERE id = 'old1'")
            last = await conn.fetchval(
                "SELECT type FROM events WHERE resource_name LIKE '%/old1' "
                "ORDER BY sequence DESC LIMIT 1"
            )
        assert row["state"] == "expired" and row["amount_outside"] == 0
        assert last == "payment.reorged"
        check = ledger_check(fresh_dsn)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        await pool.close()
