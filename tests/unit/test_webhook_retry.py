"""The retry policy: what follows each attempt, examples and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.webhooks.retry import Decision, Outcome, Policy, Status, decide, parse_retry_after

NOW = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = Policy(initial_backoff_s=10, max_backoff_s=3600, give_up_after_s=3 * 86400)
LATER = NOW + timedelta(days=3)


def after(code: int | None, attempt: int = 1, jitter: float = 0.0, **kw: object) -> Decision:
    return decide(POLICY, attempt, Outcome(code, **kw), NOW, LATER, jitter)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_2xx_is_done(code: int) -> None:
    assert after(code).status is Status.SUCCEEDED


@pytest.mark.parametrize("code", [300, 301, 400, 401, 403, 404, 409, 410, 413, 422])
def test_other_4xx_and_redirects_fail_without_retry(code: int) -> None:
    decision = after(code)
    assert decision.status is Status.FAILED and decision.next_attempt_time is None


@pytest.mark.parametrize("code", [None, 408, 429, 500, 502, 503, 504, 599])
def test_network_errors_timeouts_408_429_and_5xx_are_retried(code: int | None) -> None:
    decision = after(code)
    assert decision.status is Status.PENDING
    assert decision.next_attempt_time == NOW + timedelta(seconds=5)  # half of 10 s at jitter 0


def test_backoff_doubles_then_caps() -> None:
    waits = [
        (after(500, attempt=n, jitter=0.999999).next_attempt_time - NOW).total_seconds()  # type: ignore[operator]
        for n in (1, 2, 3, 4, 10, 40, 1000)
    ]
    assert [round(w) for w in waits] == [10, 20, 40, 80, 3600, 3600, 3600]


def test_retry_after_is_honoured_but_not_past_giving_up() -> None:
    assert after(429, retry_after_s=120).next_attempt_time == NOW + timedelta(seconds=120)
    far = after(503, retry_after_s=10 * 86400)
    assert far.next_attempt_time == LATER


def test_gives_up_only_at_give_up_time() -> None:
    at_end = decide(POLICY, 80, Outcome(500), LATER, LATER, 0.5)
    assert at_end.status is Status.FAILED and "gave up" in at_end.reason
    before = decide(POLICY, 80, Outcome(500), LATER - timedelta(seconds=1), LATER, 0.5)
    assert before.status is Status.PENDING and before.next_attempt_time == LATER


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Tue, 01 Jan 2030 00:01:00 GMT", NOW) == 60
    assert parse_retry_after("Mon, 31 Dec 2029 00:00:00 GMT", NOW) == 0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Policy(initial_backoff_s=0)
    with pytest.raises(ValueError):
        Policy(initial_backoff_s=10, max_backoff_s=5)


@given(
    code=st.one_of(st.none(), st.integers(min_value=100, max_value=599)),
    attempt=st.integers(min_value=1, max_value=10_000),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
    elapsed_s=st.floats(min_value=0, max_value=4 * 86400),
    retry_after_s=st.one_of(st.none(), st.floats(min_value=0, max_value=30 * 86400)),
)
def test_properties(
    code: int | None, attempt: int, jitter: float, elapsed_s: float, retry_after_s: float | None
) -> None:
    created = NOW
    give_up = created + timedelta(seconds=POLICY.give_up_after_s)
    now = created + timedelta(seconds=elapsed_s)
    decision = decide(
        POLICY, attempt, Outcome(code, retry_after_s=retry_after_s), now, give_up, jitter
    )
    if code is not None and 200 <= code < 300:
        assert decision.status is Status.SUCCEEDED
    elif code is not None and code < 500 and code not in (408, 429):
        assert decision.status is Status.FAILED  # never retried
    elif now < give_up:
        # Retried, never sooner than half the initial backoff, never after giving up.
        assert decision.status is Status.PENDING and decision.next_attempt_time is not None
        assert now < decision.next_attempt_time <= give_up
        wait_s = (decision.next_attempt_time - now).total_seconds()
        assert wait_s <= max(POLICY.max_backoff_s, retry_after_s or 0) + 1e-6
    else:
        assert decision.status is Status.FAILED


def test_retrying_a_dead_receiver_spans_the_whole_give_up_period() -> None:
    """Simulated: a receiver that never answers is tried until give_up_time, not before."""
    now, attempt = NOW, 1
    while True:
        decision = decide(POLICY, attempt, Outcome(None, "refused"), now, LATER, 0.5)
        if decision.status is not Status.PENDING:
            break
        assert decision.next_attempt_time is not None
        now, attempt = decision.next_attempt_time, attempt + 1
    assert now == LATER and 60 < attempt < 200


def test_a_huge_retry_after_is_clamped_to_the_retry_schedule() -> None:
    # A hostile receiver's Retry-After: 99999999999999 overflowed the datetime
    # and the attempt was never recorded; it now waits until giving up, at most.
    for header in ("99999999999999", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"):
        wait_s = parse_retry_after(header, NOW)
        assert wait_s is not None
        decision = decide(POLICY, 1, Outcome(503, retry_after_s=wait_s), NOW, LATER, 0.5)
        assert decision.status is Status.PENDING
        assert decision.next_attempt_time == LATER
    assert parse_retry_after("²", NOW) is None  # a digit to str.isdigit, not to float


@given(st.floats(min_value=0, max_value=1e300), st.integers(1, 100))
def test_any_retry_after_gives_a_time_within_the_schedule(
    retry_after_s: float, attempt: int
) -> None:
    decision = decide(POLICY, attempt, Outcome(429, retry_after_s=retry_after_s), NOW, LATER, 0.5)
    assert decision.next_attempt_time is not None
    assert NOW < decision.next_attempt_time <= LATER
