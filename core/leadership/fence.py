"""The fence: the first check of every transaction a leader writes.

It reads the role's epoch row FOR SHARE in the writer's own transaction, so
the check and the writes commit together: a takeover's increment waits for
this transaction to end, and any transaction that starts after the increment
sees the new epoch and is refused. The comparison runs in the database
(leader_fence, which raises KF001 and is logged by the server) so a refusal
is decided and recorded even if the deposed writer is cancelled before it
reads the answer; decide.fence_verdict states the same rule and checks the
answer here. The same statement bounds how long this transaction may sit
idle (one lease), so a leader paused mid-transaction
cannot hold a takeover back for longer than that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import assert_never

import asyncpg

from core.leadership import decide
from core.leadership.decide import Term, Verdict

log = logging.getLogger("kassa.core.leadership")


class FencedError(RuntimeError):
    """This replica's epoch is no longer current: another replica leads the role."""


# What leader_fence raises when the epoch moved (migration 0016).
FENCE_SQLSTATE = "KF001"
# Refusals since start, per role: what a metric exposes (and tests read).
refusals: dict[str, int] = {}


class Fence:
    def __init__(
        self, term: Term, lease_s: float, on_refused: Callable[[], None] | None = None
    ) -> None:
        assert lease_s > 0, lease_s
        self.term = term
        self.lease_s = lease_s
        # A refusal proves another replica leads: the elector resigns at once.
        self.on_refused = on_refused
        self.refused = False

    async def check(self, conn: asyncpg.Connection) -> None:
        """Raises FencedError (the caller's transaction then rolls back) unless
        the stored epoch of the role is still this term's."""
        assert conn.is_in_transaction(), "the fence must run inside the writer's transaction"
        try:
            stored: int | None = await conn.fetchval(
                # leader_fence (migration 0016) raises KF001 unless the epoch is ours.
                """SELECT leader_fence($1, $3),
                          set_config('idle_in_transaction_session_timeout', $2, true)""",
                self.term.role,
                f"{decide.idle_session_timeout_ms(self.lease_s)}ms",
                self.term.epoch,
            )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != FENCE_SQLSTATE:
                raise
            stored = None  # moved (the server names the stored epoch in its log)
        verdict = decide.fence_verdict(self.term.epoch, stored)
        match verdict:
            case Verdict.WRITE:
                return
            case Verdict.REFUSE:
                refusals[self.term.role] = refusals.get(self.term.role, 0) + 1
                self.refused = True
                log.warning(
                    "fenced write refused",
                    extra={
                        "role": self.term.role,
                        "epoch": self.term.epoch,
                        "holder": self.term.holder,
                    },
                )
                if self.on_refused is not None:
                    self.on_refused()
                raise FencedError(f"{self.term.role}: epoch {self.term.epoch} is no longer current")
            case _:
                assert_never(verdict)
