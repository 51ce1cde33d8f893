"""The outbox's event ids (core/events/outbox._uuid7s): RFC 9562 version 7 —
the millisecond they were made in the leading 48 bits (so a block's ids land
at the right edge of `events_id_key`), the version and variant bits, and 74
random bits that keep ids unique across processes and replicas."""

from __future__ import annotations

import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from core.events.outbox import _uuid7s


@given(unix_ms=st.integers(min_value=0, max_value=2**48 - 1), n=st.integers(1, 64))
def test_layout(unix_ms: int, n: int) -> None:
    ids = _uuid7s(n, unix_ms)
    assert len(ids) == n
    for text in ids:
        u = uuid.UUID(hex=text)
        assert u.hex == text  # 32 lowercase hex digits, as asyncpg takes them
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert u.int >> 80 == unix_ms


def test_now_and_ordered_across_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    (first,) = _uuid7s(1)
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(hex=first).int >> 80 <= after
    # Ids of a later millisecond sort after every id of an earlier one (as
    # uuid compares in PostgreSQL: bytewise), whatever their random bits.
    early, late = _uuid7s(1000, 1_700_000_000_000), _uuid7s(1000, 1_700_000_000_001)
    assert max(early) < min(late)
    assert max(uuid.UUID(hex=e).bytes for e in early) < min(uuid.UUID(hex=e).bytes for e in late)


def test_random_bits_are_random() -> None:
    # 100,000 ids of one millisecond (as a replica and a process writing at the
    # same time would make): all distinct, and every one of the 74 random bits
    # takes both values.
    ids = [uuid.UUID(hex=t).int for t in _uuid7s(100_000, 1_700_000_000_000)]
    assert len(set(ids)) == len(ids)
    random_mask = ((1 << 12) - 1) << 64 | ((1 << 62) - 1)
    ones = zeros = 0
    for i in ids:
        ones |= i & random_mask
        zeros |= ~i & random_mask
    assert ones == random_mask and zeros == random_mask
