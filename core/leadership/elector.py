"""Elects this replica leader of one role, and ends the leadership at once when
it can no longer be sure of it: the one writer of leader_epochs.

A dedicated connection (never the pool's) holds the role's session advisory
lock. The server ends that session when it sits idle for one lease
(idle_session_timeout), so the lock of a paused or cut-off replica is freed;
a live leader keeps it busy with a heartbeat several times per lease. On
taking the lock the elector increments the role's epoch; the led task gets a
Fence of that epoch and checks it in every transaction it writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import assert_never

import asyncpg

from core.leadership import decide
from core.leadership.decide import Step, Term
from core.leadership.fence import Fence
from core.leadership.settings import LeadershipSettings

log = logging.getLogger("kassa.core.leadership")

_TAKEOVER = """
INSERT INTO leader_epochs (role, epoch, holder) VALUES ($1, 1, $2)
ON CONFLICT (role) DO UPDATE
   SET epoch = leader_epochs.epoch + 1, holder = EXCLUDED.holder, acquire_time = now()
RETURNING epoch"""
# Errors that mean "the database or the session is gone", not a bug. asyncpg
# raises InternalClientError ("not connected", "another operation is in
# progress") for a statement sent after the server ended the session with its
# FATAL notice read but the close not yet processed -- the case this
# connection's idle_session_timeout makes likely; letting it escape would end
# this replica's contention for the role for good.
_LOST = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


class Elector:
    def __init__(
        self,
        dsn: str,
        role: str,
        settings: LeadershipSettings,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        assert decide.is_role(role), role
        self.dsn = dsn
        self.role = role
        self.settings = settings
        self.monotonic_s = monotonic_s
        self.heartbeat_s = decide.heartbeat_interval_s(settings.lease_s)
        # The current term while this replica leads the role, else None.
        self.term: Term | None = None
        # That term's fence (on-demand writes of the role check it too: core/api/leader.py).
        self.fence: Fence | None = None
        self.terms_led = 0
        # While the database is unreachable: logged once when it goes, once when it is back.
        self.unreachable = False

    async def run(self, lead: Callable[[Fence], Awaitable[None]]) -> None:
        """Contends for the role forever; runs lead(fence) while leading and
        cancels it the moment leadership ends."""
        while True:
            try:
                await self._contend_once(lead)
            except asyncio.CancelledError:
                raise
            except _LOST as exc:
                if not self.unreachable:
                    log.warning(
                        "leadership: database unreachable, retrying",
                        extra={"role": self.role, "error": type(exc).__name__},
                    )
                self.unreachable = True
            await asyncio.sleep(self.heartbeat_s)

    async def _contend_once(self, lead: Callable[[Fence], Awaitable[None]]) -> None:
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.settings.lease_s,
            server_settings={
                "idle_session_timeout": f"{decide.idle_session_timeout_ms(self.settings.lease_s)}ms",
                "application_name": f"kassa-leader {self.role}"[:63],
            },
        )
        if self.unreachable:
            log.info("leadership: database reachable again", extra={"role": self.role})
            self.unreachable = False
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            key = decide.lock_key(self.role)
            # Polled: PostgreSQL tells no one when an advisory lock is freed
            # (pg_advisory_lock would block without a heartbeat, and the
            # server would end this idle-looking session).
            while not await asyncio.wait_for(  # noqa: ASYNC110
                conn.fetchval("SELECT pg_try_advisory_lock($1)", key), self.heartbeat_s
            ):
                await asyncio.sleep(self.heartbeat_s)
            # Waits for transactions of the previous leader that already passed
            # the fence (they hold the row FOR SHARE); none can pass it after.
            epoch = int(await conn.fetchval(_TAKEOVER, self.role, self.settings.holder))
            term = Term(self.role, epoch, self.settings.holder)
            await self._lead(conn, term, lost, lead)
        finally:
            self.term = None
            self.fence = None
            conn.terminate()  # ends the session: the lock is free for another replica

    async def _lead(
        self,
        conn: asyncpg.Connection,
        term: Term,
        lost: asyncio.Event,
        lead: Callable[[Fence], Awaitable[None]],
    ) -> None:
        self.term = term
        self.terms_led += 1
        log.info(
            "leadership acquired",
            extra={"role": term.role, "epoch": term.epoch, "holder": term.holder},
        )
        started_s = self.monotonic_s()
        fence = Fence(term, self.settings.lease_s, on_refused=lost.set)
        self.fence = fence

        async def run_led() -> None:
            await lead(fence)

        led = asyncio.create_task(run_led(), name=f"lead {term.role}")
        lost_wait = asyncio.create_task(lost.wait())
        renewed_s = started_s
        reason = "stopped"  # cancelled from outside: the core is shutting down
        try:
            while True:
                await asyncio.wait(
                    {led, lost_wait}, timeout=self.heartbeat_s, return_when=asyncio.FIRST_COMPLETED
                )
                if led.done():
                    reason = "led task ended"
                    if not led.cancelled() and led.exception() is not None:
                        reason = f"led task failed: {type(led.exception()).__name__}"
                    return
                step = decide.watch_step(
                    not lost.is_set() and not conn.is_closed(),
                    renewed_s,
                    self.monotonic_s(),
                    self.settings.lease_s,
                )
                match step:
                    case Step.RESIGN:
                        reason = (
                            "fenced"
                            if fence.refused
                            else "connection lost"
                            if lost.is_set()
                            else "lease lapsed"
                        )
                        return
                    case Step.KEEP:
                        pass
                    case _:
                        assert_never(step)
                sent_s = self.monotonic_s()
                try:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self.heartbeat_s)
                except _LOST:
                    reason = "heartbeat failed"
                    return
                renewed_s = sent_s
        finally:
            self.term = None  # no longer the leader, at once
            self.fence = None
            lost_wait.cancel()
            if not led.done() and reason != "stopped":
                # A write in flight reaches its fence (decide.resign_grace_s).
                await asyncio.wait({led}, timeout=decide.resign_grace_s(self.settings.lease_s))
            led.cancel()
            await asyncio.gather(led, lost_wait, return_exceptions=True)
            failure = led.exception() if led.done() and not led.cancelled() else None
            log.warning(
                "leadership ended",
                exc_info=failure,
                extra={
                    "role": term.role,
                    "epoch": term.epoch,
                    "reason": reason,
                    "led_s": round(self.monotonic_s() - started_s, 3),
                },
            )
