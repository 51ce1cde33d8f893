"""Deciding where two views of a chain part ways. Pure.

The callers fetch the canonical hashes at the heights in question (one
batched request) and this module decides; keeping the decision apart makes
the reorg logic testable without a node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cursor:
    height: int
    hash: str


def common_ancestor(
    candidates: Iterable[Cursor], canonical: Mapping[int, str | None]
) -> Cursor | None:
    """The highest candidate whose hash is the canonical hash at its height.

    canonical maps height → the node's hash there (None when the chain is
    shorter). Candidates need not be sorted; hashes compare case-blind.
    """
    for cursor in sorted(candidates, key=lambda c: c.height, reverse=True):
        found = canonical.get(cursor.height)
        if found is not None and found.lower() == cursor.hash.lower():
            return cursor
    return None


def extends(parent: Cursor, parent_hash: str, height: int) -> bool:
    """Whether a block at `height` naming `parent_hash` directly follows parent."""
    return height == parent.height + 1 and parent_hash.lower() == parent.hash.lower()
