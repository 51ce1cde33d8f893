"""The delivery worker's send loop waits for its wakes with one timer kept
across turns (core/webhooks/worker.py, DeliveryWorker._wake_by), not a timer
made and cancelled per turn, and still looks again every poll interval when
nothing wakes it."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest

from core.webhooks.sealing import parse_keyring
from core.webhooks.settings import WebhookSettings
from core.webhooks.worker import DeliveryWorker


class _Unreachable:
    """A pool whose database cannot be reached: every claim and every look for
    the next due time fails at once (the worker retries at the poll)."""

    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        raise OSError("unreachable")

    async def release(self, conn: Any) -> None:  # pragma: no cover - nothing acquired
        pass


def _worker(pool: _Unreachable, poll_interval_s: float) -> DeliveryWorker:
    return DeliveryWorker(
        pool,  # type: ignore[arg-type]
        None,
        WebhookSettings(poll_interval_s=poll_interval_s, concurrency=4),
        lambda: datetime.now(UTC),
        parse_keyring("k1:" + "A" * 43 + "="),
    )


async def _run(worker: DeliveryWorker) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_the_send_loop_arms_no_timer_per_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    pool = _Unreachable()
    worker = _worker(pool, poll_interval_s=60.0)
    task = await _run(worker)
    try:
        turns_before, armed_before = pool.acquired, len(armed)
        for _ in range(50):
            worker.wake()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert pool.acquired - turns_before >= 25  # the loop turned at the wakes
        # asyncio.timeout around each wait armed a timer every turn.
        assert len(armed) - armed_before <= 1
    finally:
        await _stop(task)


async def test_with_no_wake_the_send_loop_looks_again_every_poll_interval() -> None:
    pool = _Unreachable()
    worker = _worker(pool, poll_interval_s=0.05)
    task = await _run(worker)
    try:
        before = pool.acquired
        await asyncio.sleep(0.5)
        assert pool.acquired - before >= 4
    finally:
        await _stop(task)
