"""Decisions about the delivery processes (pure: values in, values out).

The core sends webhook deliveries from `delivery_processes` child processes
(core/webhooks/supervisor.py starts them, core/webhooks/process.py is one):
its single event loop spent 430-580 us of CPU per delivery, so a second
process is what lets deliveries use the machine's other core.

- `share`: the core's limits (concurrency, endpoint_concurrency) are totals,
  divided among the processes so that their sum is exactly the total: a
  receiver never sees more than endpoint_concurrency attempts at once from
  one core, however many processes send.
- `restart_delay_s`: a crashed process is restarted after an exponential
  backoff that resets once a process has run for a while.
- `report_line` / `read_report`: what a process tells the core twice a
  second on its stdout (its attempt counters, whether it reaches the
  database); the core adds the counters to its own /metrics.
- `problem`: whether every process is sending, for the core's health.
- `hung`: whether a running process has gone silent for so long that the
  core kills it (and so restarts it, as any process that ends).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

from core.webhooks.settings import WebhookSettings

# A process that ran this long before it ended starts the backoff afresh.
STABLE_AFTER_S = 30.0
FIRST_RESTART_S = 0.5
MAX_RESTART_S = 30.0
# How often a process reports, and after how long without one it is stale.
REPORT_EVERY_S = 0.5
STALE_AFTER_S = 5.0
# After how long without a report a running process is hung and killed: 30
# report periods, 3x the stale bound. Its reports come from a task of its own
# event loop, so only a loop blocked (or a process stopped) that long misses
# them; on a loaded 2-core machine scheduling delays stay well under a second.
# Killing re-sends its attempts in flight (at least once), so health says
# NOT_SERVING first (STALE_AFTER_S) and the kill waits for a clear hang.
HUNG_AFTER_S = 15.0
# Before its first report a process imports and makes its first connection
# attempt (asyncpg's connect timeout: 60 s), then reports either way: a slow
# start under load or a silent database is not a hang.
HUNG_STARTING_AFTER_S = 90.0
# What a report may hold: one counter per decision of retry.decide.
DECISIONS = frozenset({"succeeded", "pending", "failed"})


def share(total: int, processes: int, index: int) -> int:
    """Process `index`'s part of a limit of `total` split among `processes`."""
    assert processes >= 1 and 0 <= index < processes, (processes, index)
    assert total >= processes, "settings.parse requires a slot per process"
    part = total // processes + (1 if index < total % processes else 0)
    assert part >= 1
    return part


def settings_of(settings: WebhookSettings, index: int) -> WebhookSettings:
    """The settings one delivery process runs its worker with: its share of
    both limits (its lease follows from them, as for the in-process worker)."""
    n = settings.delivery_processes
    return dataclasses.replace(
        settings,
        concurrency=share(settings.concurrency, n, index),
        endpoint_concurrency=share(settings.endpoint_concurrency, n, index),
    )


def crashes_in_a_row(before: int, ran_s: float) -> int:
    """How many times in a row the process has now ended early."""
    return 1 if ran_s >= STABLE_AFTER_S else before + 1


def restart_delay_s(crashes: int) -> float:
    """Backoff before the next start: 0.5 s, doubled per crash in a row, at most 30 s."""
    assert crashes >= 1
    delay = min(MAX_RESTART_S, FIRST_RESTART_S * 2.0 ** min(crashes - 1, 16))
    assert FIRST_RESTART_S <= delay <= MAX_RESTART_S
    return delay


@dataclass(frozen=True)
class Report:
    # Attempts recorded by the process since it started, by decision.
    attempts: Mapping[str, int]
    database_ok: bool


def report_line(report: Report) -> bytes:
    return (
        json.dumps({"attempts": dict(report.attempts), "database_ok": report.database_ok}).encode()
        + b"\n"
    )


def read_report(line: bytes) -> Report | None:
    """A report, or None for a line that is not one (never trusted further)."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("database_ok"), bool):
        return None
    attempts = raw.get("attempts")
    if not isinstance(attempts, dict) or not all(
        k in DECISIONS and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in attempts.items()
    ):
        return None
    return Report(attempts, raw["database_ok"])


def increments(before: Mapping[str, int], now: Mapping[str, int]) -> dict[str, int]:
    """What to add to the core's counters: the growth since the last report of
    the same process (a restarted process counts from 0 again)."""
    grown = {k: v - before.get(k, 0) for k, v in now.items() if v > before.get(k, 0)}
    assert all(v > 0 for v in grown.values())
    return grown


@dataclass(frozen=True)
class ProcessView:
    """What the core sees of one delivery process."""

    running: bool
    # Seconds since its last report (before its first one: since it started).
    since_report_s: float
    # From its last report; None: none yet since it started.
    database_ok: bool | None


def up(view: ProcessView) -> bool:
    """Runs and reports (kassa_webhook_delivery_process_up)."""
    return view.running and view.since_report_s <= STALE_AFTER_S


def hung(view: ProcessView) -> bool:
    """Whether the running process has been silent too long: the core kills
    it (the restart follows as for any process that ended)."""
    if not view.running:
        return False
    # database_ok is None only until its first report: every report says it.
    bound_s = HUNG_STARTING_AFTER_S if view.database_ok is None else HUNG_AFTER_S
    assert STALE_AFTER_S < HUNG_AFTER_S < HUNG_STARTING_AFTER_S
    return view.since_report_s > bound_s


def process_problem(view: ProcessView) -> str | None:
    """Why the process is not sending, or None. Stable texts: a change of
    verdict is a change of state, never a growing number."""
    if not view.running:
        return "not running (restarting)"
    if not up(view):
        return f"no report for over {STALE_AFTER_S:g} s"
    if view.database_ok is None:
        return "starting"  # not sending until it has said it reaches the database
    if not view.database_ok:
        return "cannot reach the database"
    return None


def problem(views: Mapping[int, ProcessView]) -> str | None:
    """The first process's problem ("process 2: cannot reach the database"), or None."""
    for index in sorted(views):
        found = process_problem(views[index])
        if found is not None:
            return f"delivery process {index}: {found}"
    return None
