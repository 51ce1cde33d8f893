"""Common-ancestor decision (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.evm.ancestry import Cursor, common_ancestor, extends


def _h(tag: str, height: int) -> str:
    return "0x" + f"{tag}{height}".encode().hex().ljust(64, "0")[:64]


def test_newest_canonical_candidate_wins_whatever_the_order() -> None:
    canonical = {h: _h("a", h) for h in range(20)}
    candidates = [
        Cursor(10, _h("b", 10)),
        Cursor(5, _h("a", 5)),
        Cursor(8, _h("a", 8)),
        Cursor(9, _h("b", 9)),
    ]
    assert common_ancestor(candidates, canonical) == Cursor(8, _h("a", 8))


def test_none_when_nothing_is_canonical_or_heights_are_above_the_head() -> None:
    canonical: dict[int, str | None] = {1: _h("a", 1), 30: None}
    assert common_ancestor([Cursor(1, _h("b", 1)), Cursor(30, _h("a", 30))], canonical) is None
    assert common_ancestor([], canonical) is None


def test_hash_comparison_ignores_case() -> None:
    assert common_ancestor(
        [Cursor(3, _h("a", 3).upper().replace("0X", "0x"))], {3: _h("a", 3)}
    ) == Cursor(3, _h("a", 3).upper().replace("0X", "0x"))


def test_extends_needs_next_height_and_matching_parent() -> None:
    parent = Cursor(7, _h("a", 7))
    assert extends(parent, _h("a", 7), 8)
    assert not extends(parent, _h("a", 7), 9)
    assert not extends(parent, _h("b", 7), 8)


@given(st.integers(1, 60), st.integers(0, 60), st.integers(0, 60))
def test_ancestor_of_a_fork_is_the_fork_point(length: int, fork: int, window: int) -> None:
    fork = min(fork, length - 1)
    ours = [Cursor(h, _h("a" if h <= fork else "b", h)) for h in range(length)]
    canonical = {h: _h("a", h) for h in range(length + 5)}
    recent = ours[max(0, length - window - 1) :]
    found = common_ancestor(recent, canonical)
    if recent[0].height <= fork:
        assert found == Cursor(fork, _h("a", fork))
    else:
        assert found is None
