"""A delivery process's cyclic GC (core/delivery_main._lean_gc): still on, its
startup's objects frozen, young collections later; cycles are still collected."""

from __future__ import annotations

import gc
import weakref

from core import delivery_main


class _Node:
    other: _Node | None = None


def test_the_gc_stays_on_and_collects_cycles() -> None:
    saved = gc.get_threshold()
    try:
        delivery_main._lean_gc()
        assert gc.isenabled()
        assert gc.get_threshold() == (delivery_main.GC_YOUNG_THRESHOLD, *saved[1:])
        assert gc.get_freeze_count() > 0
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
