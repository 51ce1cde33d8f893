"""What health believes about who follows a chain (core/leadership/guard.py,
track_applied_head): a leader of the same chain in another database of the same
PostgreSQL cluster is not ours, and a replica that leads the chain itself judges
it by its own follower, whatever it saw before it led.

Both were wrong before: pg_locks lists every database's advisory locks, and the
flag set while not leading stayed set once leading, so a core whose adapter died
reported the chain (and "") SERVING: another deployment or test stack on the same
cluster following the same chain id was enough."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from core.leadership import decide
from core.leadership.decide import follower_role
from core.leadership.guard import Leadership, track_applied_head
from core.leadership.settings import LeadershipSettings
from core.store.migrate import migrate

CHAIN = "eip155:31337"
LEASE_S = 1.5


@dataclass
class _Applier:
    chain: str


@dataclass
class _Follower:
    """The two fields track_applied_head reads and writes of a ChainFollower."""

    applier: _Applier
    head_height: int | None = None


async def _until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_a_leader_in_another_database_is_not_ours_and_our_own_lead_wins(
    postgres: Any, fresh_dsn: str
) -> None:
    await migrate(fresh_dsn)
    role = follower_role(CHAIN)
    key = decide.lock_key(role)
    other_dsn = postgres.create_database(f"other{secrets.token_hex(4)}")
    elsewhere = await asyncpg.connect(other_dsn)
    here = await asyncpg.connect(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=2)
    assert pool is not None
    leadership = Leadership(fresh_dsn, LeadershipSettings(LEASE_S, "a:1"))
    tracker = asyncio.create_task(
        track_applied_head(leadership, role, _Follower(_Applier(CHAIN)), pool)  # type: ignore[arg-type]
    )
    elector: asyncio.Task[None] | None = None
    try:
        # Another deployment's core (another database) follows the same chain id.
        assert await elsewhere.fetchval("SELECT pg_try_advisory_lock($1)", key)
        await _until(lambda: role in leadership.led_elsewhere, 5, "never read")
        await asyncio.sleep(1.5)  # at least one more read with the other lock held
        assert leadership.led_elsewhere[role] is False

        # A replica of this deployment (this database) leads it: seen.
        assert await here.fetchval("SELECT pg_try_advisory_lock($1)", key)
        await _until(lambda: leadership.led_elsewhere.get(role), 5, "our replica not seen")

        # It goes; this replica takes the role: its own follower is what counts now.
        assert await here.fetchval("SELECT pg_advisory_unlock($1)", key)

        async def lead(fence: object) -> None:
            await asyncio.Event().wait()

        elector = asyncio.create_task(leadership.guard(role, lead)())  # type: ignore[arg-type]
        await _until(lambda: leadership.leads(role), 10, "never led")
        await _until(lambda: leadership.led_elsewhere.get(role) is False, 5, "stale flag")
    finally:
        for task in (tracker, elector):
            if task is not None:
                task.cancel()
        await asyncio.gather(tracker, *(t for t in (elector,) if t), return_exceptions=True)
        await pool.close()
        await here.close()
        await elsewhere.close()
