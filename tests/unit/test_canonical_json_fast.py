"""The faster paths of the webhook body keep its bytes: canonical_json.dumps_planned
writes what dumps writes for any dict a plan can make, and timestamps.json_string's
path for UTC writes Timestamp.ToJsonString's text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from core.render import canonical_json
from core.render.timestamps import json_string

# Any text a proto3 string holds (valid UTF-8: every code point but surrogates).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=16)
_SCALARS = st.one_of(
    _TEXT, st.booleans(), st.integers(-(2**31), 2**32 - 1), st.integers(-(2**63), 2**64 - 1)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=24,
)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=8))
def test_dumps_planned_writes_the_bytes_of_dumps(as_dict: dict[str, Any]) -> None:
    assert canonical_json.dumps_planned(as_dict) == canonical_json.dumps(as_dict)


def test_every_control_character_and_the_escaped_ones_are_written_alike() -> None:
    texts = [chr(c) for c in range(0x80)] + ["\u2028", "\u2029", "\ufeff", "\U0010ffff", "é/"]
    as_dict = {text: [text, f"a{text}b"] for text in texts}
    assert canonical_json.dumps_planned(as_dict) == canonical_json.dumps(as_dict)


def _reference(when: datetime) -> str:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp.ToJsonString()


_MICROS = st.one_of(
    st.just(0), st.integers(0, 999).map(lambda ms: ms * 1000), st.integers(0, 999_999)
)


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)),
    _MICROS,
    st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=5, minutes=30))]),
)
def test_json_string_is_to_json_string(when: datetime, micros: int, zone: timezone) -> None:
    # UTC itself takes the isoformat path; an equal offset of another object, and
    # any other zone, the arithmetic (years 1-9999: a UTC time of an aware one
    # stays in datetime's range only for these zones near the ends' middle).
    at = when.replace(microsecond=micros, tzinfo=zone)
    if zone is not UTC and not datetime(1, 1, 2) <= when <= datetime(9999, 12, 30):
        return
    assert json_string(at) == _reference(at)


def test_json_string_of_utc_in_each_form() -> None:
    at = datetime(2026, 12, 1, 18, 0, 5, tzinfo=UTC)
    assert json_string(at) == "2026-12-01T18:00:05Z"
    assert json_string(at.replace(microsecond=120_000)) == "2026-12-01T18:00:05.120Z"
    assert json_string(at.replace(microsecond=123_456)) == "2026-12-01T18:00:05.123456Z"
    assert json_string(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00Z"
