"""The dispatcher's ids (core/webhooks/dispatch.batch_ids): row n of a batch
gets prefix + hex(base + n), a UUIDv7 of the dispatch's millisecond, in row
order within the batch and after every earlier millisecond's ids. That
PostgreSQL makes the same ids is tests/integration/test_webhook_batch_ids.py's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from core.webhooks.dispatch import batch_ids
from tests.support.webhook_rows import row_id

_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
)
_RANDOM = st.binary(min_size=10, max_size=10)
_ROWS = st.integers(min_value=1, max_value=(1 << 32) - 1)
_EXTREMES = (b"\x00" * 10, b"\xff" * 10)


@example(datetime(2026, 12, 1, tzinfo=UTC), _EXTREMES[1], (1 << 32) - 1)
@example(datetime(2026, 12, 1, tzinfo=UTC), _EXTREMES[0], 1)
@given(_TIMES, _RANDOM, _ROWS)
def test_every_row_is_a_uuid7_of_the_dispatch_millisecond(
    now: datetime, random: bytes, n: int
) -> None:
    prefix, base = batch_ids(now, random)
    assert -(1 << 63) <= base < (1 << 63)  # a bigint
    made = row_id(prefix, base, n)
    assert made.version == 7 and made.variant == uuid.RFC_4122
    since_epoch = now - datetime(1970, 1, 1, tzinfo=UTC)
    assert int.from_bytes(made.bytes[:6], "big") == since_epoch // timedelta(milliseconds=1)


@given(_TIMES, _RANDOM, _ROWS, _ROWS)
def test_rows_sort_in_row_order(now: datetime, random: bytes, n: int, m: int) -> None:
    prefix, base = batch_ids(now, random)
    assert (row_id(prefix, base, n) < row_id(prefix, base, m)) == (n < m)


@example(datetime(2243, 1, 1, tzinfo=UTC), timedelta(milliseconds=1), *_EXTREMES, 1 << 31, 1)
@given(
    _TIMES,
    st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=3650)),
    _RANDOM,
    _RANDOM,
    _ROWS,
    _ROWS,
)
def test_a_later_millisecond_sorts_after(
    now: datetime, step: timedelta, random: bytes, later_random: bytes, n: int, m: int
) -> None:
    earlier = row_id(*batch_ids(now, random), n)
    assert row_id(*batch_ids(now + step, later_random), m) > earlier


@given(_TIMES, _RANDOM, _RANDOM)
def test_batches_differ_by_their_random_bits(now: datetime, one: bytes, other: bytes) -> None:
    """Two batches of one millisecond share no id unless their 74 random bits
    are within a batch's rows of each other."""
    a, b = batch_ids(now, one), batch_ids(now, other)
    assert (a[0] == b[0]) == ((one[0] & 0x0F, one[1]) == (other[0] & 0x0F, other[1]))
    if a[0] != b[0] or abs(a[1] - b[1]) >= 1 << 32:
        ids = {row_id(*a, n) for n in (1, 2, (1 << 32) - 1)}
        assert not ids & {row_id(*b, n) for n in (1, 2, (1 << 32) - 1)}
