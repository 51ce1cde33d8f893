"""Small blocking helpers the integration tests share: poll until a condition
holds, and run one query against the test cluster from synchronous test code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg


def wait_until(
    check: Callable[[], bool], timeout_s: float = 30.0, what: str = "", poll_s: float = 0.02
) -> None:
    """Returns once `check()` is true; fails the test after `timeout_s`."""
    assert timeout_s > 0 and poll_s > 0
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(poll_s)


def db(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """One query on a fresh connection (closed afterwards, so no test holds a session)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())
