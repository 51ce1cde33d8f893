"""The event loop every long-running kassa-core process runs on: uvloop.

Measured for the core's gRPC server (a bare grpc.aio empty-call benchmark,
32 callers, client and server in two processes, 6 alternating pairs):
server CPU per call 406-503 µs on asyncio's loop, 338-436 µs on uvloop,
calls/s +10-19 %; for the delivery processes' aiohttp POSTs 158 -> 144 µs
(docs/performance.md). grpc.aio, asyncpg and aiohttp run on it unchanged.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on a new uvloop loop (the benchmarks that serve the core's
    server in-process call this too, so that they measure the loop it runs on)."""
    return uvloop.run(main)
