"""On-demand runs of work that one replica leads (RunSweeps, RunReconciliation): they
run on the leader, under its fence, like its scheduled runs (core/leadership).

A replica that does not lead the role refuses (UNAVAILABLE, NOT_LEADER: nothing was
written, a retry may reach the leader); one deposed while it ran is refused by its
fence at the write and answers the same. Without this, two replicas could plan the
same sweeps or store runs concurrently, and a deposed leader's write go through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core import reasons
from core.errors import Refusal, unavailable
from core.leadership.fence import Fence

# How long a request waits for this replica to win a first election (just started).
LEADER_WAIT_S = 1.0

FenceOf = Callable[[], Awaitable[Fence | None]]


def not_leader(role: str) -> Refusal:
    return unavailable(
        reasons.NOT_LEADER,
        f"this core replica does not lead {role}; nothing was done; retry (another replica "
        "leads it)",
        role=role,
    )


async def leader_fence(fence_of: FenceOf, role: str) -> Fence:
    """This replica's fence of `role`, or the NOT_LEADER refusal."""
    fence = await fence_of()
    if fence is None:
        raise not_leader(role)
    return fence
