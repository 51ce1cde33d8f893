"""The time-ordered prefix of deliveries' ids (core/webhooks/dispatch.time_ordered_prefix):
a UUIDv7's first 8 bytes, later milliseconds sorting after earlier ones. That
the dispatcher's ids are UUIDv7 in dispatch order is tests/integration's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from core.webhooks.dispatch import time_ordered_prefix

_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
)


@example(datetime(2243, 1, 1, tzinfo=UTC), timedelta(milliseconds=1))  # a float's lost microseconds
@given(_TIMES, st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=3650)))
def test_a_later_millisecond_sorts_after(now: datetime, step: timedelta) -> None:
    assert time_ordered_prefix(now + step) > time_ordered_prefix(now)


@given(_TIMES, st.binary(min_size=16, max_size=16))
def test_overlaid_on_a_random_uuid_it_is_a_uuid7_of_its_millisecond(
    now: datetime, random: bytes
) -> None:
    v4 = uuid.UUID(bytes=random, version=4)
    made = uuid.UUID(bytes=time_ordered_prefix(now) + v4.bytes[8:])
    assert made.version == 7 and made.variant == uuid.RFC_4122
    since_epoch = now - datetime(1970, 1, 1, tzinfo=UTC)
    assert int.from_bytes(made.bytes[:6], "big") == since_epoch // timedelta(milliseconds=1)
