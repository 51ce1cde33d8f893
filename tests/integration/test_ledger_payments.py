"""Payments in the ledger: ChainApplier driven with synthetic blocks and undos
against real PostgreSQL; balances through detection, confirmation, reorg and
re-inclusion, then `kassactl ledger check`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.chain.apply import ChainApplier
from core.chain.index import ActiveInvoiceIndex
from core.ledger import accounts, store
from kassa.chain.v1 import adapter_pb2 as chain_pb
from tests.support.kassactl import ledger_check
from tests.support.ledger import add_merchant, block, migrated_pool

CHAIN = "eip155:31337"
ASSET = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
ADDRESS = "0x00000000000000000000000000000000000000d1"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.asyncio
async def test_payment_postings_follow_detection_confirmation_reorg_and_reinclusion(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "acme", "Acme")
            await conn.execute(
                """INSERT INTO invoices (id, merchant_id, merchant_order_id, chain, asset,
                       asset_decimals, amount_due, price_amount, price_currency, quote_rate, quote_source, quote_time,
                       deposit_address, derivation_index, confirmations_required, expire_time,
                       monitoring_end_time, state)
                   VALUES ('inv1', 'acme', 'o1', $1, $2, 6, 25000000, '25.00', 'USD', '1.00', 'fixed', $4::timestamptz - interval '1 hour',
                           $3, 1, 2, $4, $5, 'awaiting_payment')""",
                CHAIN,
                ASSET,
                ADDRESS,
                NOW + timedelta(hours=1),
                NOW + timedelta(days=1),
            )
        index = ActiveInvoiceIndex()
        index.add(ADDRESS, "inv1")
        applier = ChainApplier(pool, CHAIN, index, lambda: NOW)
        pay = chain_pb.Transfer(
            tx_hash="0xfeed",
            index=1,
            asset=ASSET,
            from_address="0xabc",
            to_address=ADDRESS,
            amount="25000000",
            success=True,
        )
        incoming = accounts.merchant_account("acme", ASSET, "incoming")
        available = accounts.merchant_account("acme", ASSET, "available")
        refunds = accounts.merchant_account("acme", ASSET, "refunds_payable")
        custody = accounts.custody(ASSET)

        async def totals(account: str) -> tuple[int, int, int, int]:
            async with pool.acquire() as conn:
                b = (await store.get_accounts(conn, [account]))[account].balances
            return b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted

        async def merchant() -> tuple[int, int, int, int]:
            """(incoming posted net, incoming pending net, available net, refunds payable net)."""
            i, a, r = await totals(incoming), await totals(available), await totals(refunds)
            return i[3] - i[1], i[2] - i[0], a[3] - a[1], r[3] - r[1]

        await applier.apply_block(block(1, "a", [pay]))  # detected: pending credit
        assert await totals(incoming) == (0, 0, 25000000, 0)
        assert await totals(custody) == (25000000, 0, 0, 0)
        await applier.apply_block(block(1, "a", [pay]))  # a replay posts nothing
        assert await totals(incoming) == (0, 0, 25000000, 0)
        await applier.apply_block(block(2, "a", []))  # 2 confirmations: posted, paid, settled
        assert await merchant() == (0, 0, 25000000, 0)
        await applier.apply_undo(
            chain_pb.Undo(to_cursor=chain_pb.BlockCursor(height=1, hash="0xa1"), from_height=2)
        )
        # Still included at 1 but unconfirmed: reversed, pending again, settlement undone.
        assert await merchant() == (0, 25000000, 0, 0)
        await applier.apply_block(chain_pb.Block(height=2, hash="0xb2", parent_hash="0xa1"))
        assert await merchant() == (0, 0, 25000000, 0)
        # A deep reorg removes the block: the posted cycle and the settlement are reversed.
        await applier.apply_undo(
            chain_pb.Undo(to_cursor=chain_pb.BlockCursor(height=0, hash="0xgenesis"), from_height=2)
        )
        assert await merchant() == (0, 0, 0, 0)
        assert await totals(custody) == (0, 50000000, 0, 50000000)
        # Re-included, then reorged again while pending: voided.
        await applier.apply_block(
            chain_pb.Block(height=1, hash="0xc1", parent_hash="0xgenesis", transfers=[pay])
        )
        assert await merchant() == (0, 25000000, 0, 0)
        await applier.apply_undo(
            chain_pb.Undo(to_cursor=chain_pb.BlockCursor(height=0, hash="0xgenesis"), from_height=1)
        )
        assert await merchant() == (0, 0, 0, 0)
        # Finally included for good.
        await applier.apply_block(
            chain_pb.Block(height=1, hash="0xd1", parent_hash="0xgenesis", transfers=[pay])
        )
        await applier.apply_block(chain_pb.Block(height=2, hash="0xd2", parent_hash="0xd1"))
        assert await merchant() == (0, 0, 25000000, 0)
        # A further 1 USDT overpays it: the excess settles into refunds payable.
        extra = chain_pb.Transfer(
            tx_hash="0xbeef",
            index=1,
            asset=ASSET,
            from_address="0xabc",
            to_address=ADDRESS,
            amount="1000000",
            success=True,
        )
        await applier.apply_block(
            chain_pb.Block(height=3, hash="0xd3", parent_hash="0xd2", transfers=[extra])
        )
        await applier.apply_block(chain_pb.Block(height=4, hash="0xd4", parent_hash="0xd3"))
        assert await merchant() == (0, 0, 25000000, 1000000)
        async with pool.acquire() as conn:
            ids = [
                r["id"] for r in await conn.fetch("SELECT id FROM ledger_transfers ORDER BY seq")
            ]
            state = await conn.fetchval("SELECT state FROM invoices WHERE id = 'inv1'")
        assert state == "overpaid"
        assert ids[:2] == [
            "pay:eip155:31337:0xfeed:1:1:pending",
            "pay:eip155:31337:0xfeed:1:1:post",
        ]
    finally:
        await pool.close()
    checked = ledger_check(fresh_dsn)
    assert checked.returncode == 0, checked.stderr
