"""Expiry is driven by the core's clock, injected here: no sleeping until deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.chain.index import ActiveInvoiceIndex
from core.invoices import clock as expiry
from tests.support.ledger import add_merchant, migrated_pool

NOW = datetime(2030, 6, 1, tzinfo=UTC)


async def _invoice(
    conn: asyncpg.Connection, invoice_id: str, expire_time: datetime, state: str, received: int = 0
) -> None:
    await conn.execute(
        """INSERT INTO invoices (id, merchant_id, merchant_order_id, chain, asset, asset_decimals,
               amount_due, deposit_address, derivation_index, confirmations_required, expire_time,
               monitoring_end_time, state, amount_received)
           VALUES ($1, 'm', $1, 'eip155:1', 'eip155:1/slip44:60', 18, 100, '0x' || lpad($1, 40, '0'),
                   nextval('deposit_index_seq'), 1, $2::timestamptz, $2::timestamptz + interval '1 day', $3, $4)""",
        invoice_id,
        expire_time,
        state,
        received,
    )


@pytest.mark.asyncio
async def test_the_clock_expires_unpaid_and_underpays_short_confirmed_invoices(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await add_merchant(conn, "m", "M")
            await _invoice(conn, "a1", NOW - timedelta(seconds=1), "awaiting_payment")
            await _invoice(conn, "a2", NOW + timedelta(hours=1), "awaiting_payment")
            await _invoice(conn, "d1", NOW - timedelta(seconds=1), "detected", received=40)
        moved = await expiry.expire_due(pool, NOW)
        again = await expiry.expire_due(pool, NOW)
        async with pool.acquire() as conn:
            states = dict(await conn.fetch("SELECT id, state FROM invoices ORDER BY id"))
            events = [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT type, resource_name FROM events ORDER BY sequence"
                )
            ]
        assert states == {"a1": "expired", "a2": "awaiting_payment", "d1": "underpaid"}
        assert (moved, again) == (2, 0)
        assert sorted(events) == [
            ("invoice.expired", "merchants/m/invoices/a1"),
            ("invoice.underpaid", "merchants/m/invoices/d1"),
        ]
        # An hour later the second one goes too.
        assert await expiry.expire_due(pool, NOW + timedelta(hours=1)) == 1
        # Issue 19 (every unit accounted for): the address stays watched past the
        # late-payment window (it was forgotten then); a load finds every invoice.
        index = ActiveInvoiceIndex()
        async with pool.acquire() as conn:
            assert await index.load(conn) == 3
        assert index.lookup("0x" + "a1".rjust(40, "0")) == "a1"
    finally:
        await pool.close()
