"""The dispatcher's batches (core/webhooks/worker.DeliveryWorker._dispatch): after
it waited for events, its first batch is FIRST_BATCH, so a burst's first
deliveries are stored (and claimable) before a whole BATCH is; then BATCHes
until the outbox is caught up. Every event is dispatched, once (pure: the outbox
and the notifier are fakes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.webhooks import worker as worker_module
from core.webhooks.dispatch import BATCH
from core.webhooks.settings import WebhookSettings
from core.webhooks.worker import FIRST_BATCH, DeliveryWorker


class _Stop(Exception):
    """Ends the fake outbox's script."""


class _Outbox:
    """Events committed in bursts: each wait of the dispatcher lets the next one in."""

    def __init__(self, bursts: list[int]) -> None:
        self.bursts = list(bursts)
        self.pending = self.bursts.pop(0) if self.bursts else 0
        self.generation = 0
        self.batches: list[tuple[int, int]] = []  # (batch asked, events consumed)
        self.waits = 0

    async def dispatch_once(
        self, pool: Any, now: datetime, give_up_after_s: float, batch: int = BATCH
    ) -> tuple[int, int]:
        consumed = min(self.pending, batch)
        self.pending -= consumed
        self.batches.append((batch, consumed))
        return consumed, consumed

    async def wait(self, seen_generation: int) -> None:
        self.waits += 1
        if not self.bursts:
            raise _Stop
        self.pending += self.bursts.pop(0)
        self.generation += 1


def _dispatched(bursts: list[int]) -> _Outbox:
    outbox = _Outbox(bursts)
    worker = DeliveryWorker(
        None,  # type: ignore[arg-type]
        outbox,  # type: ignore[arg-type]
        WebhookSettings(),
        lambda: datetime(2026, 12, 1, tzinfo=UTC),
        None,  # type: ignore[arg-type]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker_module, "dispatch_once", outbox.dispatch_once)
        with pytest.raises(_Stop):
            asyncio.run(worker.run_dispatcher())
    return outbox


def test_a_burst_starts_with_a_small_batch_then_whole_ones() -> None:
    outbox = _dispatched([3_000])
    assert [b for b, _ in outbox.batches] == [FIRST_BATCH, BATCH, BATCH, BATCH]
    assert [c for _, c in outbox.batches] == [
        FIRST_BATCH,
        BATCH,
        BATCH,
        3_000 - FIRST_BATCH - 2 * BATCH,
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5 * BATCH), min_size=1, max_size=6))
def test_after_every_wait_the_first_batch_is_small_and_every_event_goes_once(
    bursts: list[int],
) -> None:
    outbox = _dispatched(bursts)
    assert sum(c for _, c in outbox.batches) == sum(bursts)
    assert outbox.waits == len(bursts)
    asked = [b for b, _ in outbox.batches]
    assert asked[0] == FIRST_BATCH
    for (before, consumed), after in zip(outbox.batches, asked[1:], strict=False):
        # A full batch goes on at once with a whole one; a short one waited first.
        assert after == (BATCH if consumed == before else FIRST_BATCH)
