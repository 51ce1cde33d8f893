"""The fence: the first check of every transaction a leader writes.

It reads the role's epoch row FOR SHARE in the writer's own transaction, so
the check and the writes commit together: a takeover's increment waits for
this transaction to end, and any transaction that starts after the increment
sees the new epoch and is refused. The same statement bounds how long this
transaction may sit idle (one lease), so a leader paused mid-transaction
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
        row = await conn.fetchrow(
            """SELECT epoch,
                      set_config('idle_in_transaction_session_timeout', $2, true) AS idle_bound
                 FROM leader_epochs WHERE role = $1 FOR SHARE""",
            self.term.role,
            f"{decide.idle_session_timeout_ms(self.lease_s)}ms",
        )
        stored = None if row is None else int(row["epoch"])
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
                        "stored_epoch": stored,
                        "holder": self.term.holder,
                    },
                )
                if self.on_refused is not None:
                    self.on_refused()
                raise FencedError(
                    f"{self.term.role}: epoch {self.term.epoch} is no longer current "
                    f"(stored {stored})"
                )
            case _:
                assert_never(verdict)
