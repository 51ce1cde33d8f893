"""[webhooks] endpoint_concurrency, and the lease that covers waiting for an
endpoint's slots (pure: no I/O)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.webhooks.settings import WebhookSettings, parse
from core.webhooks.worker import DeliveryWorker


def _lease_s(settings: WebhookSettings) -> float:
    worker = DeliveryWorker(None, None, settings, None, None)  # type: ignore[arg-type]
    return worker.lease_s()


def test_endpoint_concurrency_is_parsed_and_must_be_positive() -> None:
    assert parse({}).endpoint_concurrency == 8
    assert parse({"endpoint_concurrency": 3}).endpoint_concurrency == 3
    for bad in (0, -1, "4", True):
        with pytest.raises(ValueError, match="endpoint_concurrency"):
            parse({"endpoint_concurrency": bad})


def test_the_lease_covers_the_wait_for_an_endpoints_slots() -> None:
    one_round = WebhookSettings(concurrency=8, endpoint_concurrency=8, timeout_s=10)
    assert _lease_s(one_round) == 10 + one_round.lease_grace_s
    three_rounds = WebhookSettings(concurrency=16, endpoint_concurrency=6, timeout_s=10)
    assert _lease_s(three_rounds) == 30 + three_rounds.lease_grace_s


@given(
    st.integers(1, 500),
    st.integers(1, 500),
    st.floats(0.01, 60),
    st.floats(0, 60),
)
def test_an_attempt_queued_behind_every_other_claim_ends_within_its_lease(
    concurrency: int, endpoint_concurrency: int, timeout_s: float, grace_s: float
) -> None:
    settings = WebhookSettings(
        concurrency=concurrency,
        endpoint_concurrency=endpoint_concurrency,
        timeout_s=timeout_s,
        lease_grace_s=grace_s,
    )
    # Worst case: all `concurrency` claimed attempts go to one endpoint and
    # this one is last; each round of endpoint_concurrency takes timeout_s.
    rounds = math.ceil(concurrency / endpoint_concurrency)
    assert _lease_s(settings) >= rounds * timeout_s + grace_s - 1e-9
