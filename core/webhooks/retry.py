"""The one place that decides what happens after a delivery attempt.

Pure: given the policy, the attempt's outcome, the time and a random draw,
it says done, retry at a time, or failed, and why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

# Retried: the receiver may succeed later. Every other 4xx means the request
# itself is refused (400, 401, 403, 404, 410, 422 …) and would be again.
RETRYABLE_4XX = frozenset({408, 429})


class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # another attempt is scheduled
    FAILED = "failed"


@dataclass(frozen=True)
class Policy:
    initial_backoff_s: float = 30.0
    max_backoff_s: float = 3600.0
    # Retrying goes on at least this long after the delivery was created.
    give_up_after_s: float = 3 * 24 * 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.give_up_after_s < 0:
            raise ValueError("give_up_after_s must not be negative")


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code, or none (timeout, connection error)."""

    status_code: int | None
    error: str = ""
    retry_after_s: float | None = None  # from a 429/503 Retry-After header


@dataclass(frozen=True)
class Decision:
    status: Status
    next_attempt_time: datetime | None  # set when PENDING
    reason: str

    def __post_init__(self) -> None:
        # A retry has a time; a final answer never has one.
        assert (self.status is Status.PENDING) == (self.next_attempt_time is not None), self


def retryable(outcome: Outcome) -> bool:
    code = outcome.status_code
    return code is None or code in RETRYABLE_4XX or code >= 500


def backoff_s(policy: Policy, attempt: int, jitter: float) -> float:
    """Exponential from initial_backoff_s, capped; `jitter` in [0, 1) spreads
    each wait over [half, full] so that retries of one outage do not align."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    # 2**60 overflows nothing and is far past any cap.
    full_s = min(policy.max_backoff_s, policy.initial_backoff_s * 2 ** min(attempt - 1, 60))
    return float(full_s * (0.5 + 0.5 * jitter))


def decide(
    policy: Policy,
    attempt: int,
    outcome: Outcome,
    now: datetime,
    give_up_time: datetime,
    jitter: float,
) -> Decision:
    """After attempt number `attempt` (1-based) ended with `outcome` at `now`."""
    code = outcome.status_code
    if code is not None and 200 <= code < 300:
        return Decision(Status.SUCCEEDED, None, f"HTTP {code}")
    if not retryable(outcome):
        return Decision(Status.FAILED, None, f"HTTP {code} is not retried")
    if now >= give_up_time:
        return Decision(Status.FAILED, None, "gave up: retried until give_up_time")
    wait_s = backoff_s(policy, attempt, jitter)
    if outcome.retry_after_s is not None:
        # The receiver asked for a pause; honour it, but never past giving up.
        wait_s = max(wait_s, outcome.retry_after_s)
    # The last attempt is made at give_up_time itself, so retrying covers it.
    # Clamped in seconds before any datetime arithmetic: a hostile receiver's
    # Retry-After: 99999999999999 overflowed the datetime, and the attempt
    # was never recorded and was retried every lease.
    wait_s = min(wait_s, max((give_up_time - now).total_seconds(), 0.0))
    at = min(now + timedelta(seconds=wait_s), give_up_time)
    # Never a retry in the past, never one after giving up.
    assert now <= at <= give_up_time, (now, at, give_up_time)
    return Decision(Status.PENDING, at, "will retry")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Bounded before float(): a thousand digits would be inf.
        return float(value) if len(value) <= 12 else 1e12
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
