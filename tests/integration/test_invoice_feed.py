"""The chain leader's index learns invoices other replicas created, from the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.chain.index import ActiveInvoiceIndex
from core.events.outbox import NewEvent, append
from core.leadership.invoice_feed import InvoiceFeed, outbox_head
from core.store.db import create_pool
from core.store.migrate import migrate

LATER = datetime(2030, 1, 1, tzinfo=UTC)


async def _created_elsewhere(conn: asyncpg.Connection, invoice_id: str, event_type: str) -> str:
    """What another replica's CreateInvoice commits: the row and its outbox event."""
    address = "0x" + invoice_id.rjust(40, "0")
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO invoices (id, merchant_id, merchant_order_id, chain, asset,
                   asset_decimals, amount_due, deposit_address, derivation_index,
                   confirmations_required, expire_time, monitoring_end_time, state)
               VALUES ($1, 'm', $1, 'eip155:1', 'eip155:1/slip44:60', 18, 100, $2,
                       nextval('deposit_index_seq'), 1, $3, $4, 'awaiting_payment')""",
            invoice_id,
            address,
            LATER,
            LATER + timedelta(days=1),
        )
        await append(conn, [NewEvent(event_type, "m", f"merchants/m/invoices/{invoice_id}", b"")])
    return address


@pytest.mark.asyncio
async def test_the_feed_adds_invoices_created_after_the_load_once(fresh_dsn: str) -> None:
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO merchants (id, display_name) VALUES ('m', 'M')")
            before = await _created_elsewhere(conn, "a1", "invoice.created")
            head = await outbox_head(conn)
            index = ActiveInvoiceIndex()
            await index.load(conn)
            feed = InvoiceFeed(pool, index, head)
            assert index.lookup(before) == "a1"
            later = await _created_elsewhere(conn, "b2", "invoice.created")
            # An event of another type about an invoice is not a creation.
            other = await _created_elsewhere(conn, "c3", "invoice.cancelled")
        assert index.lookup(later) is None
        assert await feed.catch_up() == 1
        assert index.lookup(later) == "b2"
        assert index.lookup(other) is None
        assert feed.after == head + 2  # past both events, whatever their type
        assert await feed.catch_up() == 0  # nothing new: nothing read twice
    finally:
        await pool.close()
