"""Pure leadership decisions: lock keys, lease arithmetic, fence verdicts.

No I/O. Times are seconds on one monotonic clock (the elector's), never wall
clock: a step of the wall clock must not extend or cut a lease.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

# Roles are short names: an elected task, or a task per chain (CAIP-2 id).
_ROLE = re.compile(r"[a-z]+(:[a-z0-9]+:[A-Za-z0-9-]+)?")
# A dedicated session's heartbeat runs this many times per lease, so one lost
# or slow heartbeat does not end a healthy leadership.
HEARTBEATS_PER_LEASE = 3
# The namespace of Kassa's advisory lock keys: keys of other
# applications on the same database are unlikely to collide with these.
_KEY_PREFIX = b"kassa.leadership:"


def is_role(role: str) -> bool:
    return _ROLE.fullmatch(role) is not None


def follower_role(chain: str) -> str:
    role = f"follow:{chain}"
    assert is_role(role), role
    return role


def lock_key(role: str) -> int:
    """The advisory lock key of a role: a signed 64-bit integer, stable across
    processes and versions (Python's hash() is salted per process)."""
    assert is_role(role), role
    digest = hashlib.blake2b(_KEY_PREFIX + role.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_key_parts(role: str) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows the role's bigint advisory
    lock: its high and low 32 bits, unsigned."""
    key = lock_key(role) & 0xFFFF_FFFF_FFFF_FFFF
    return key >> 32, key & 0xFFFF_FFFF


@dataclass(frozen=True)
class Term:
    """One leadership: the role and the epoch this replica's takeover wrote."""

    role: str
    epoch: int
    holder: str

    def __post_init__(self) -> None:
        assert is_role(self.role), self.role
        assert self.epoch > 0, self.epoch


def heartbeat_interval_s(lease_s: float) -> float:
    assert lease_s > 0, lease_s
    return lease_s / HEARTBEATS_PER_LEASE


def lease_holds(last_renewed_s: float, now_s: float, lease_s: float) -> bool:
    """A leader keeps leading while its last good heartbeat is younger than the
    lease. A clock that went backwards (not monotonic) counts as lapsed."""
    assert lease_s > 0, lease_s
    elapsed_s = now_s - last_renewed_s
    return 0 <= elapsed_s < lease_s


class Verdict(enum.Enum):
    WRITE = "write"  # the epoch is still ours
    REFUSE = "refuse"  # another replica took over since (or the row is gone)


def fence_verdict(term_epoch: int, stored_epoch: int | None) -> Verdict:
    """May a leader of term_epoch write, given the epoch stored for its role?

    Only an exact match writes. A stored epoch below ours cannot happen (the
    elector only increments); it is refused all the same, never trusted.
    """
    assert term_epoch > 0, term_epoch
    if stored_epoch is not None and stored_epoch == term_epoch:
        return Verdict.WRITE
    return Verdict.REFUSE


class Step(enum.Enum):
    KEEP = "keep"  # keep leading; heartbeat again later
    RESIGN = "resign"  # the lease lapsed or the session is gone: stop at once


def watch_step(connection_alive: bool, last_renewed_s: float, now_s: float, lease_s: float) -> Step:
    """What the elector does at a heartbeat: a lost dedicated connection or a
    lapsed lease (the process was paused) end leadership at once."""
    if not connection_alive or not lease_holds(last_renewed_s, now_s, lease_s):
        return Step.RESIGN
    return Step.KEEP


def idle_session_timeout_ms(lease_s: float) -> int:
    """The server ends a dedicated session idle this long, freeing its lock for
    another replica: one lease. The heartbeat keeps a live one busy every
    lease/HEARTBEATS_PER_LEASE, well inside it."""
    assert lease_s > 0, lease_s
    return max(1, int(lease_s * 1000))


def resign_grace_s(lease_s: float) -> float:
    """How long a led task may run on after its leadership ended, so that a
    transaction already in flight reaches its fence (refused if another
    replica took over, committed if it passed before) instead of being cut
    off at an arbitrary await. Nothing it does can pass a moved epoch."""
    assert lease_s > 0, lease_s
    return min(1.0, lease_s / 6)
