"""A claim runs beside the sends (core/webhooks/worker.py): what it raises
beyond the errors it retries must still end the worker's run, as when it ran
in the send loop (its supervisor restarts it), never vanish in a task nobody
awaits while the deliveries it leased wait out their lease unsent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core.events.outbox import NewEvent, append
from core.events.stream import OutboxNotifier
from core.store.db import create_pool
from core.store.migrate import migrate
from core.webhooks.sealing import MAGIC, parse_keyring
from core.webhooks.settings import WebhookSettings
from core.webhooks.worker import DeliveryWorker


@pytest.mark.asyncio
async def test_a_claim_that_raises_what_it_does_not_expect_ends_the_workers_run(
    fresh_dsn: str,
) -> None:
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=4)
    notifier = OutboxNotifier(fresh_dsn, poll_interval_s=0.05)
    await notifier.start()
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO merchants (id, display_name) VALUES ('m', 'M')")
            # A sealed secret whose nonce is cut short: opening it raises the
            # cipher's ValueError, not the SealError a claim retries on.
            kek_id = b"k1"
            corrupt = MAGIC + bytes([len(kek_id)]) + kek_id + b"short"
            await conn.execute(
                """INSERT INTO webhook_endpoints
                     (id, merchant_id, url, event_types, description, disabled,
                      secret_sealed, after_sequence)
                   VALUES ('e1', 'm', 'http://127.0.0.1:9/hook', '{}', '', false, $1, 0)""",
                corrupt,
            )
            async with conn.transaction():
                await append(
                    conn, [NewEvent("invoice.created", "m", "merchants/m/invoices/i1", b"")]
                )
        keyring = parse_keyring("k1:" + "A" * 43 + "=")
        worker = DeliveryWorker(
            pool,
            notifier,
            WebhookSettings(poll_interval_s=0.05, allow_private_targets=True),
            lambda: datetime.now(UTC),
            keyring,
        )
        with pytest.raises(ValueError, match=r"[Nn]once"):
            await asyncio.wait_for(worker.run(), timeout=30)
    finally:
        await notifier.close()
        await pool.close()
