"""The worker's attempts in flight (core/webhooks/worker.py): never more than
`concurrency` sends at once, and all of those slots used; every event delivered
and every delivery recorded, through 500s that are retried and a send that
raises; nothing left counted in flight afterwards. Written for a restructure of
the attempts (a fixed set of senders instead of a task each; measured, not kept)
and kept as the guard of any later one."""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime

import pytest
from aiohttp import web

from core.events.outbox import NewEvent, append
from core.events.stream import OutboxNotifier
from core.store.db import create_pool
from core.store.migrate import migrate
from core.webhooks import retry
from core.webhooks.sealing import parse_keyring
from core.webhooks.settings import WebhookSettings
from core.webhooks.worker import DeliveryWorker

EVENTS = 60
CONCURRENCY = 4


@pytest.mark.asyncio
async def test_attempts_keep_to_the_concurrency_and_deliver_everything_once_recorded(
    fresh_dsn: str,
) -> None:
    sending = 0
    most = 0
    received: collections.Counter[str] = collections.Counter()
    answered: collections.Counter[str] = collections.Counter()

    async def hook(request: web.Request) -> web.Response:
        nonlocal sending, most
        await request.read()
        event_id = request.headers["Kassa-Event-Id"]
        sending += 1
        most = max(most, sending)
        try:
            await asyncio.sleep(0.005)
        finally:
            sending -= 1
        received[event_id] += 1
        # Every seventh event's first attempt fails: retried on the schedule.
        if int(request.headers["Kassa-Event-Type"].rsplit(".", 1)[1]) % 7 == 0 and (
            received[event_id] == 1
        ):
            return web.Response(status=500)
        answered[event_id] += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=6)
    notifier = OutboxNotifier(fresh_dsn, poll_interval_s=0.05)
    await notifier.start()
    worker: DeliveryWorker | None = None
    run: asyncio.Task[None] | None = None
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO merchants (id, display_name) VALUES ('m', 'M')")
            await conn.execute(
                """INSERT INTO webhook_endpoints
                     (id, merchant_id, url, event_types, description, disabled,
                      secret, after_sequence)
                   VALUES ('e1', 'm', $1, '{}', '', false, 'whsec_x', 0)""",
                f"http://127.0.0.1:{port}/hook",
            )
            async with conn.transaction():
                await append(
                    conn,
                    [
                        NewEvent(f"invoice.{i}", "m", f"merchants/m/invoices/i{i}", b"")
                        for i in range(EVENTS)
                    ],
                )
        worker = DeliveryWorker(
            pool,
            notifier,
            WebhookSettings(
                poll_interval_s=0.05,
                allow_private_targets=True,
                concurrency=CONCURRENCY,
                endpoint_concurrency=CONCURRENCY,
                policy=retry.Policy(initial_backoff_s=0.05, max_backoff_s=0.1),
            ),
            lambda: datetime.now(UTC),
            parse_keyring("k1:" + "A" * 43 + "="),
        )
        # One send raises (once): an attempt that failed, recorded and retried.
        raised: list[str] = []
        send = worker.send

        async def send_or_raise(session, claimed, now):  # type: ignore[no-untyped-def]
            if claimed.event_type == "invoice.3" and not raised:
                raised.append(claimed.event_id)
                raise RuntimeError("boom")
            return await send(session, claimed, now)

        worker.send = send_or_raise  # type: ignore[method-assign]
        run = asyncio.create_task(worker.run())

        async def all_recorded() -> bool:
            async with pool.acquire() as conn:
                return bool(
                    await conn.fetchval(
                        "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
                    )
                    == EVENTS
                )

        for _ in range(600):
            if await all_recorded():
                break
            assert not run.done(), run
            await asyncio.sleep(0.05)
        assert await all_recorded()
        assert len(answered) == EVENTS and set(answered.values()) == {1}
        assert most == CONCURRENCY  # all the slots were used, never more
        assert raised  # the raising send was retried: its event was answered
        async with pool.acquire() as conn:
            failed_first = await conn.fetchval(
                """SELECT count(*) FROM webhook_attempts
                    WHERE attempt = 1 AND (status_code = 500 OR status_code IS NULL)"""
            )
        assert failed_first == len(range(0, EVENTS, 7)) + 1
        assert not worker._in_flight
    finally:
        if run is not None:
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
        await notifier.close()
        await pool.close()
        await runner.cleanup()
