"""Handing a group of results from a worker thread (HSM, store) to the event loop in one wake-up
rather than one per result."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeAlias

Settled: TypeAlias = tuple["asyncio.Future[Any]", Any, BaseException | None]


def deliver(by_loop: dict[asyncio.AbstractEventLoop, list[Settled]]) -> None:
    """From the worker thread: one call_soon_threadsafe per loop."""
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[Settled]) -> None:
    for future, result, error in settled:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
