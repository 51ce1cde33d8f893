"""The registry of open streams' read cursors that the metrics sampler reads:
every open stream counted, a closed one forgotten, a cursor only forward."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.events.stream import Positions


def test_an_open_stream_is_counted_until_it_closes() -> None:
    positions = Positions()
    assert positions.streams() == []
    with positions.opened(7) as token:
        assert positions.streams() == [7]
        positions.moved(token, 12)
        assert positions.streams() == [12]
        with pytest.raises(AssertionError):
            positions.moved(token, 3)  # a cursor never moves back
    assert positions.streams() == []
    positions.moved(token, 20)  # a late report of a closed stream is ignored
    assert positions.streams() == []


def test_a_stream_that_fails_is_forgotten_too() -> None:
    positions = Positions()
    with pytest.raises(RuntimeError), positions.opened(0):
        raise RuntimeError("the call ended")
    assert positions.streams() == []


@given(st.lists(st.lists(st.integers(0, 1_000), max_size=5), max_size=8))
def test_each_open_stream_reports_its_furthest_cursor(moves: list[list[int]]) -> None:
    positions = Positions()
    with contextlib.ExitStack() as open_streams:
        tokens = [open_streams.enter_context(positions.opened(0)) for _ in moves]
        expected = []
        for token, steps in zip(tokens, moves, strict=True):
            cursor = 0
            for step in sorted(steps):
                positions.moved(token, step)
                cursor = step
            expected.append(cursor)
        assert sorted(positions.streams()) == sorted(expected)
    assert positions.streams() == []
