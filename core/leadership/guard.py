"""Runs the core's single-owner loops under leadership: one elector per role.

The loops themselves are unchanged; the guard hands each its Fence while
this replica leads, and cancels it when leadership ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from core.chain.follower import ChainFollower
from core.leadership import decide
from core.leadership.elector import Elector
from core.leadership.fence import Fence
from core.leadership.invoice_feed import InvoiceFeed
from core.leadership.settings import LeadershipSettings


class Leadership:
    def __init__(self, dsn: str, settings: LeadershipSettings) -> None:
        self.dsn = dsn
        self.settings = settings
        self.electors: dict[str, Elector] = {}
        # Roles this replica does not lead but another replica does (seen in pg_locks).
        self.led_elsewhere: dict[str, bool] = {}

    def guard(
        self, role: str, lead: Callable[[Fence], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        """A loop to supervise: contend for role, run lead(fence) while leading."""
        assert role not in self.electors, f"{role} is guarded twice"
        elector = Elector(self.dsn, role, self.settings)
        self.electors[role] = elector

        async def lead_and_hold(fence: Fence) -> None:
            await lead(fence)
            # A loop with nothing scheduled returns at once (sweeps or
            # reconciliation on demand only): keep the role rather than hand it
            # round the replicas every heartbeat.
            await asyncio.Event().wait()

        return lambda: elector.run(lead_and_hold)

    def leads(self, role: str) -> bool:
        elector = self.electors.get(role)
        return elector is not None and elector.term is not None

    async def fence_of(self, role: str, wait_s: float = 0.0) -> Fence | None:
        """The fence of this replica's term of `role`, or None when it does not lead
        it; waits up to `wait_s` for one (a replica that has just started contends
        within a heartbeat)."""
        deadline_s = asyncio.get_running_loop().time() + wait_s
        while True:
            elector = self.electors.get(role)
            if elector is not None and elector.fence is not None:
                return elector.fence
            if asyncio.get_running_loop().time() >= deadline_s:
                return None
            await asyncio.sleep(0.05)


async def track_applied_head(
    leadership: Leadership, role: str, follower: ChainFollower, pool: asyncpg.Pool
) -> None:
    """On a replica that does not lead the chain: the head its API shows (payment
    confirmations) is the leader's applied cursor, and whether some replica
    leads the chain at all (for health), read every second."""
    classid, objid = decide.lock_key_parts(role)
    while True:
        if leadership.leads(role):
            # Led here: health reads this replica's own follower (core/server.py).
            leadership.led_elsewhere[role] = False
        else:
            try:
                async with pool.acquire() as conn:
                    row = await conn.fetchrow(
                        """SELECT (SELECT height FROM chain_cursors WHERE chain = $1) AS height,
                                  EXISTS (SELECT 1 FROM pg_locks
                                           WHERE locktype = 'advisory' AND granted
                                             -- pg_locks shows every database of the
                                             -- cluster: another deployment's (or test
                                             -- stack's) leader of the same chain is
                                             -- not ours.
                                             AND database = (SELECT oid FROM pg_database
                                                              WHERE datname = current_database())
                                             AND classid = $2::bigint::oid
                                             AND objid = $3::bigint::oid
                                             AND objsubid = 1) AS led""",
                        follower.applier.chain,
                        classid,
                        objid,
                    )
                if row["height"] is not None:
                    follower.head_height = int(row["height"])
                leadership.led_elsewhere[role] = bool(row["led"])
            except (asyncpg.PostgresError, OSError):
                leadership.led_elsewhere[role] = False  # unknown: not vouched for
        await asyncio.sleep(1.0)


def follow_led(follower: ChainFollower, feed: InvoiceFeed) -> Callable[[Fence], Awaitable[None]]:
    """A chain's follower as a led task: every transaction of its applier is
    fenced, and its index learns invoices other replicas created."""

    async def lead(fence: Fence) -> None:
        follower.applier.fence = fence
        follower.applier.catch_up = feed.catch_up
        await follower.run()

    return lead
