"""The dispatcher's batch sizes (core.webhooks.dispatch.next_batch, the decider
DeliveryWorker._dispatch follows): after it waited for events its first batch is
FIRST_BATCH, so a burst's first deliveries are stored (and claimable) before a
whole BATCH is; then BATCHes until the outbox is caught up. The outbox itself
(every event dispatched once, against PostgreSQL) is tests/integration's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.webhooks.dispatch import BATCH, FIRST_BATCH, next_batch


def test_a_full_batch_is_followed_by_a_whole_one_a_short_one_by_a_small_one() -> None:
    assert next_batch(FIRST_BATCH, FIRST_BATCH) == BATCH
    assert next_batch(BATCH, BATCH) == BATCH
    assert next_batch(BATCH, BATCH - 1) == FIRST_BATCH
    assert next_batch(FIRST_BATCH, 0) == FIRST_BATCH
    assert FIRST_BATCH < BATCH


def _dispatch(bursts: list[int]) -> list[tuple[int, int]]:
    """The dispatcher's loop over an outbox that receives `bursts` one per wait:
    (batch asked, events consumed) per statement."""
    batches: list[tuple[int, int]] = []
    pending, queued, batch = 0, list(bursts), FIRST_BATCH
    pending += queued.pop(0)
    while True:
        consumed = min(pending, batch)
        pending -= consumed
        batches.append((batch, consumed))
        if consumed < batch:  # caught up: waits for the next burst
            if not queued:
                return batches
            pending += queued.pop(0)
        batch = next_batch(batch, consumed)


def test_a_burst_starts_with_a_small_batch_then_whole_ones() -> None:
    assert _dispatch([3_000]) == [
        (FIRST_BATCH, FIRST_BATCH),
        (BATCH, BATCH),
        (BATCH, BATCH),
        (BATCH, 3_000 - FIRST_BATCH - 2 * BATCH),
    ]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_whole_batches_only_while_the_outbox_is_behind(data: st.DataObject) -> None:
    asked = data.draw(st.sampled_from([FIRST_BATCH, BATCH]))
    consumed = data.draw(st.integers(0, asked))
    after = next_batch(asked, consumed)
    assert after in (FIRST_BATCH, BATCH)
    assert (after == BATCH) == (consumed == asked)


def test_bursts_each_begin_small_and_every_event_goes_once() -> None:
    assert FIRST_BATCH == 100 and BATCH == 1_000  # the figures below
    assert _dispatch([250, 0, 1_000, 2_050]) == [
        (100, 100),
        (1_000, 150),  # caught up: waits; the next burst is empty
        (100, 0),
        (100, 100),
        (1_000, 900),
        (100, 100),
        (1_000, 1_000),
        (1_000, 950),
    ]
