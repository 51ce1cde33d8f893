"""One webhook delivery process: the claim/send/record worker of
core/webhooks/worker.py on its own event loop, pool and HTTP sessions.

Started by the core (core/webhooks/supervisor.py, entry core/delivery_main.py);
it does not dispatch (the core does, once) and serves no gRPC. Its pipes:

- stdin, from the core: each line wakes the worker (the core stored new
  deliveries); end of file means the core is gone, and the process stops.
- stdout, to the core: a report every REPORT_EVERY_S (core/webhooks/fleet.py):
  its attempt counters and whether it reaches the database.

Stopping (SIGTERM, SIGINT, or the core gone) cancels the worker: attempts in
flight are cancelled and their leases lapse, so another process (or the
next start) sends them again, exactly as when the core's own loop stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from datetime import datetime

import asyncpg

from core import metrics
from core.store.db import create_pool
from core.webhooks import fleet
from core.webhooks.sealing import Keyring
from core.webhooks.settings import WebhookSettings
from core.webhooks.worker import DeliveryWorker

log = logging.getLogger("kassa.core.webhooks")
# Connections: the recorder's and the claimer's (each kept; core/webhooks/worker.py),
# the idle wait's and the probe's.
POOL_SIZE = 4


def attempt_totals() -> dict[str, int]:
    """The process's WEBHOOK_ATTEMPTS so far, by outcome (its own registry)."""
    totals: dict[str, int] = {}
    for family in metrics.WEBHOOK_ATTEMPTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[sample.labels["outcome"]] = int(sample.value)
    return totals


async def _database_ok(pool: asyncpg.Pool, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT true"))
    except Exception:  # refused, reset, timed out: any of them is "no"
        return False


async def _connect(dsn: str, retry_s: float, report: Callable[[bool], None]) -> asyncpg.Pool:
    """The pool, waiting for the database as long as it takes (reported)."""
    while True:
        try:
            return await create_pool(dsn, POOL_SIZE, min_size=1)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            report(False)
            log.warning(
                "webhook delivery process cannot reach the database; retrying",
                extra={"error": str(exc) or type(exc).__name__},
            )
            await asyncio.sleep(retry_s)


async def _until(event: asyncio.Event) -> None:
    await event.wait()


async def run(
    dsn: str,
    settings: WebhookSettings,
    keyring: Keyring,
    clock: Callable[[], datetime],
    probe_every_s: float,
) -> None:
    """Runs until SIGTERM/SIGINT or the end of stdin; raises what the worker raised."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    database_ok: list[bool | None] = [None]

    def report(ok: bool | None = None) -> None:
        if ok is not None:
            database_ok[0] = ok
        if database_ok[0] is not None and not transport.is_closing():
            transport.write(fleet.report_line(fleet.Report(attempt_totals(), database_ok[0])))

    async def reporting() -> None:
        while True:
            report()
            await asyncio.sleep(fleet.REPORT_EVERY_S)

    worker: list[DeliveryWorker] = []

    async def listening() -> None:
        while await reader.readline():
            if worker:
                worker[0].wake()
        stop.set()  # end of file: the core is gone

    reporter = asyncio.create_task(reporting(), name="report")
    listener = asyncio.create_task(listening(), name="wakes")
    stopping = asyncio.create_task(_until(stop), name="stop")
    pool: asyncpg.Pool | None = None
    try:
        connecting = asyncio.create_task(_connect(dsn, probe_every_s, report))
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            return
        pool = connecting.result()
        report(True)
        worker.append(DeliveryWorker(pool, None, settings, clock, keyring))

        async def probing() -> None:
            assert pool is not None
            while True:
                await asyncio.sleep(probe_every_s)
                report(await _database_ok(pool, probe_every_s + 2))

        prober = asyncio.create_task(probing(), name="probe")
        sending = asyncio.create_task(worker[0].run(), name="webhooks")
        try:
            await asyncio.wait({sending, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (prober, sending):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
            with contextlib.suppress(asyncio.CancelledError):
                await sending  # raises what the worker raised, if it ended by itself
    finally:
        for task in (reporter, listener, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        report()  # the last counts, before the pipe closes
        transport.close()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 2.0)
            except Exception:
                pool.terminate()
