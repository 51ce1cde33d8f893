"""Reading EXPLAIN (FORMAT JSON) plans in tests that assert a statement's plan by
node and index names, never by time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The plan's node and every node under it, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)
