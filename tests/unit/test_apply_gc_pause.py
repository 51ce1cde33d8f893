"""The block applier's pause of the cyclic GC: on for the block only, shared
by concurrent appliers, restored however a block ends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.chain.apply import _no_cyclic_gc


@pytest.fixture(autouse=True)
def _collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_during_a_block_and_back_after_it() -> None:
    with _no_cyclic_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_back_after_a_block_that_raises() -> None:
    with pytest.raises(RuntimeError), _no_cyclic_gc():
        raise RuntimeError("the block failed")
    assert gc.isenabled()


def test_left_off_when_it_was_off_before() -> None:
    gc.disable()
    with _no_cyclic_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()


@given(st.lists(st.booleans(), max_size=40))
def test_overlapping_appliers_share_one_pause(steps: list[bool]) -> None:
    """Any interleaving of appliers starting (True) and ending (False, the
    oldest still running): the collector is off exactly while one runs."""
    gc.enable()
    running: list[ExitStack] = []
    for start in steps:
        if start:
            stack = ExitStack()
            stack.enter_context(_no_cyclic_gc())
            running.append(stack)
        elif running:
            running.pop(0).close()
        assert gc.isenabled() == (not running)
    for stack in running:
        stack.close()
    assert gc.isenabled()
