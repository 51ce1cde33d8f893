"""The core's side of the webhook delivery processes: starts them, wakes
them, takes their reports, restarts one that ends, stops them.

Each process (core/webhooks/process.py) is `python -m core.delivery_main`
with the core's configuration file and environment: secrets reach it as
they reach the core, never through its command line. Its stderr is the
core's (the same JSON log lines); its stdin and stdout are pipes to here.

- Wakes: when the core's dispatcher stores new deliveries, every process is
  told on its stdin (a line, skipped while one is still unread).
- Reports: the attempt counters of a process are added to the core's own
  WEBHOOK_ATTEMPTS (its /metrics), by their growth since the last report.
  Counters sent to the core rather than prometheus-client's multiprocess
  mode: that mode moves every metric of the core to files, needs each gauge
  told how to merge, and drops the process and platform collectors, for one
  counter family of the children. What a process counted in its last
  REPORT_EVERY_S before a SIGKILL is lost from the counter (the attempts
  themselves are in the database).
- Health: `fleet.problem` over what is seen of each process is published
  on every change (core/server.py: the "kassa.webhooks" health entry), and
  logged once per change.
- A process that ends unasked is logged (one line), counted
  (kassa_webhook_delivery_process_restarts) and started again after
  `fleet.restart_delay_s`. Its claimed deliveries stay leased until their
  lease lapses; any process then claims them again: at least once.
- A process that hangs without ending (stopped, its loop blocked: no report
  for `fleet.hung`'s bound) is killed by the watcher, logged (one line), and
  then restarted by the path above: its share of the concurrency comes back
  without an operator.
- Stopping (cancellation): SIGTERM to every process, SIGKILL after
  STOP_WAIT_S; the attempts they had in flight lapse as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from core import metrics
from core.webhooks import fleet

log = logging.getLogger("kassa.core.webhooks")
STOP_WAIT_S = 1.5
ENTRY = "core.delivery_main"


@dataclass
class _Process:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    reported: float | None = None
    database_ok: bool | None = None
    counted: dict[str, int] = field(default_factory=dict)
    # Killed as hung: not killed (nor logged) again while it is reaped.
    killed: bool = False

    def view(self, now: float) -> fleet.ProcessView:
        running = self.proc is not None and self.proc.returncode is None
        return fleet.ProcessView(
            running=running,
            since_report_s=now - (self.reported if self.reported is not None else self.started),
            database_ok=self.database_ok,
        )


class DeliveryProcesses:
    def __init__(
        self,
        config_path: Path,
        count: int,
        publish: Callable[[str | None], Awaitable[None]] | None = None,
        check_every_s: float = 1.0,
    ) -> None:
        assert count >= 1
        self.config_path = config_path
        self.publish = publish
        self.check_every_s = check_every_s
        self._processes = [_Process(i) for i in range(count)]
        self._stopping = False

    def wake(self) -> None:
        for p in self._processes:
            stdin = p.proc.stdin if p.proc is not None else None
            # One unread wake is enough: a process claims all that is due.
            if stdin is not None and not stdin.is_closing():
                with contextlib.suppress(Exception):
                    if stdin.transport.get_write_buffer_size() == 0:
                        stdin.write(b"\n")

    async def run(self) -> None:
        keepers = [
            asyncio.create_task(self._keep(p), name=f"webhook delivery process {p.index}")
            for p in self._processes
        ]
        watcher = asyncio.create_task(self._watch(), name="webhook delivery processes health")
        tasks = {*keepers, watcher}
        try:
            # asyncio.wait, not gather: cancelled, gather would cancel the
            # keepers too, and the cancel below would then break their stops.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # what a keeper or the watcher raised
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop_restarting(self) -> None:
        """The core is stopping: a process that ends now is not started again
        (under systemd the whole group gets SIGTERM at once)."""
        self._stopping = True

    async def _watch(self) -> None:
        last: str | None = ""
        previous = time.monotonic()
        while True:
            now = time.monotonic()
            # Woken this late, the core's own loop was blocked: the reports may
            # be unread in the pipes, so no process is judged hung this round.
            core_stalled = now - previous > self.check_every_s + fleet.STALE_AFTER_S
            previous = now
            for p in self._processes:
                view = p.view(now)
                metrics.WEBHOOK_PROCESS_UP.labels(str(p.index)).set(int(fleet.up(view)))
                metrics.WEBHOOK_PROCESS_DATABASE_OK.labels(str(p.index)).set(
                    int(bool(view.database_ok))
                )
                if fleet.hung(view) and not core_stalled and not p.killed:
                    self._kill_hung(p, view)
            found = fleet.problem({p.index: p.view(now) for p in self._processes})
            if found != last:
                if found is None:
                    log.info("webhook delivery processes sending")
                elif found.endswith(": starting"):
                    log.info("webhook delivery processes starting", extra={"reason": found})
                else:
                    log.warning(
                        "webhook delivery processes not all sending", extra={"reason": found}
                    )
                if self.publish is not None:
                    await self.publish(found)
                last = found
            await asyncio.sleep(self.check_every_s)

    def _kill_hung(self, p: _Process, view: fleet.ProcessView) -> None:
        """SIGKILL (a stopped process ignores SIGTERM until continued); its
        keeper then sees it end and restarts it, with the backoff and the
        restarts counter: the one restart path."""
        assert p.proc is not None and p.proc.returncode is None
        p.killed = True
        log.error(
            "webhook delivery process hung",
            extra={
                "index": p.index,
                "pid": p.proc.pid,
                "since_report_s": round(view.since_report_s, 3),
            },
        )
        with contextlib.suppress(ProcessLookupError):
            p.proc.kill()

    async def _keep(self, p: _Process) -> None:
        crashes = 0
        while True:
            p.counted, p.reported, p.database_ok, p.killed = {}, None, None, False
            p.started = time.monotonic()
            p.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                ENTRY,
                "--config",
                str(self.config_path),
                "--index",
                str(p.index),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # Its own session: a terminal's SIGINT or a SIGTERM to the core's
                # process group is the core's to act on; it stops the processes
                # itself, and a process whose core died sees its stdin close.
                start_new_session=True,
            )
            try:
                await self._follow(p)
                code = await p.proc.wait()
            except asyncio.CancelledError:
                await self._stop(p)
                raise
            ran_s = time.monotonic() - p.started
            if self._stopping:
                return
            crashes = fleet.crashes_in_a_row(crashes, ran_s)
            delay_s = fleet.restart_delay_s(crashes)
            metrics.WEBHOOK_PROCESS_RESTARTS.labels(str(p.index)).inc()
            log.error(
                "webhook delivery process ended; restarting",
                extra={
                    "index": p.index,
                    "pid": p.proc.pid,
                    "exit_code": code,
                    "ran_s": round(ran_s, 3),
                    "restart_in_s": delay_s,
                },
            )
            await asyncio.sleep(delay_s)

    async def _follow(self, p: _Process) -> None:
        """Takes the process's reports until its stdout closes (it ended)."""
        assert p.proc is not None and p.proc.stdout is not None
        while line := await p.proc.stdout.readline():
            report = fleet.read_report(line)
            if report is None:
                log.warning("webhook delivery process wrote a line that is not a report")
                continue
            for outcome, n in fleet.increments(p.counted, report.attempts).items():
                metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc(n)
            p.counted = dict(report.attempts)
            p.reported = time.monotonic()
            p.database_ok = report.database_ok

    async def _stop(self, p: _Process) -> None:
        proc = p.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        # The counts of its last moments, if it wrote them before it ended.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._follow(p), 0.2)
