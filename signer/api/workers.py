"""N signer workers behind one listen address: the supervisor.

Python runs one thread of Python at a time per process, so one process signs at the rate its
event loop allows however many cores the machine has. With server.workers = N the supervisor
starts N worker processes (`kassa-signer serve --worker I`); each binds the same address with
SO_REUSEPORT (the kernel spreads connections over them) and opens its own PKCS#11 session on
its own HSM thread (python-pkcs11 is not thread-safe; a session never crosses a fork: workers
are fresh processes, not forks). They share one state file: the request-id guard, velocity
counters and the one audit chain are read and written inside cross-process exclusive batch
transactions (signer.state.store), so a replay is refused and a velocity cap holds exactly
whichever worker a request reaches.

The supervisor holds the state directory (signer.api.lifecycle), forwards SIGHUP (policy
reload) and SIGTERM/SIGINT to every worker, and keeps no HSM session itself. A worker that
ends on its own stops them all: the others are stopped cleanly, then the requests the dead
worker had admitted but not answered are audited and released, and the supervisor exits
non-zero for the service manager to restart it. Fail closed, never half a signer.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from signer.api.lifecycle import hold_state, release_orphans
from signer.config import Config
from signer.policy.load import load_policy
from signer.state.store import StoreThread

log = logging.getLogger("signer.workers")

STOP_WAIT_S = 30.0
READY = b"ready"


def supervise(config: Config, config_path: Path | None) -> int:
    config.check_serveable()
    load_policy(config)  # a bad policy refuses the start here, before any worker runs
    owner = hold_state(config.state_dir)
    try:
        _audit_orphans(config, "found at start: the last run ended")
        argv = [sys.executable, "-m", "signer.main"]
        if config_path is not None:
            argv += ["--config", str(config_path)]
        workers: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(config.server.workers):
                # One at a time: SoftHSM2 processes opening the token at the same moment can
                # read its files mid-update and find no token; a worker says "ready" on its
                # stdout once serving, and only then does the next one start.
                worker = subprocess.Popen(
                    [*argv, "serve", "--worker", str(i)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                workers.append(worker)
                if not _ready(worker):
                    log.error("a worker did not start", extra={"worker": i})
                    _stop_all(workers)
                    return worker.wait() or 1
        except BaseException:
            _stop_all(workers)
            raise
        log.info(
            "workers started",
            extra={"workers": len(workers), "pids": ",".join(str(w.pid) for w in workers)},
        )
        code = _watch(workers, config.server.grace_s)
        _audit_orphans(config, f"worker ended on its own (exit {code})" if code else "stopped")
        return code
    finally:
        os.close(owner)


def _watch(workers: list[subprocess.Popen[bytes]], grace_s: float) -> int:
    """Waits until every worker has ended; returns 0 after a requested stop that every worker
    finished cleanly, else the first unexpected exit status (1 for a signal)."""
    stopping = [False]

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGHUP:
            stopping[0] = True
        for w in workers:
            if w.poll() is None:
                w.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = 0
    alive = list(workers)
    kill_at: float | None = None
    while alive:
        if stopping[0] and kill_at is None:
            kill_at = time.monotonic() + grace_s + STOP_WAIT_S
        if kill_at is not None and time.monotonic() > kill_at:
            for w in alive:
                log.error("worker did not stop in time: killed", extra={"pid": w.pid})
                w.kill()
            kill_at = float("inf")
        ended = [w for w in alive if w.poll() is not None]
        if not ended:
            time.sleep(0.05)
            continue
        for w in ended:
            alive.remove(w)
            exit_code = w.returncode
            if exit_code != 0 and code == 0:
                code = exit_code if exit_code > 0 else 1
            if not stopping[0]:
                log.error(
                    "a worker ended on its own: stopping all",
                    extra={"pid": w.pid, "exit": exit_code},
                )
                code = code or 1
                stopping[0] = True
                for other in alive:
                    if other.poll() is None:
                        other.terminate()
    for w in workers:
        if w.stdin is not None:
            w.stdin.close()
    return code


def _ready(worker: subprocess.Popen[bytes]) -> bool:
    assert worker.stdout is not None
    line = worker.stdout.readline()  # the worker exits (end of file) if it cannot serve
    worker.stdout.close()
    return line.strip() == READY


def _stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        try:
            w.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def _audit_orphans(config: Config, cause: str) -> None:
    db = StoreThread(config.db_path)
    try:
        db.call(functools.partial(release_orphans, cause=cause))
    finally:
        db.close()
