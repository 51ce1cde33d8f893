"""Several core replicas on one PostgreSQL: the stack's core is replica 0.

Each replica has its own directory (config, log), API port and holder name;
all share the database, the certificates and the webhook key-encryption key
(a secret sealed by one replica must open on every other).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
from pathlib import Path

from localstack.fullstack import LocalStack
from localstack.ports import free_port
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup


def holder(index: int) -> str:
    return f"replica-{index}"


def leadership_options(lease_s: float) -> dict[str, object]:
    """core_options of a LocalStack whose core is replica 0."""
    return {"leadership": {"lease_s": lease_s, "holder": holder(0)}}


class Replicas:
    """Replica 0 is the stack's own core (started by LocalStack); this starts
    and stops the others, and can crash or pause any of them."""

    def __init__(self, stack: LocalStack, count: int) -> None:
        assert count >= 1, count
        base = stack.core_setup()
        assert base.leadership is not None, "start the stack with leadership_options()"
        assert base.certs is not None
        self.stack = stack
        self.setups: list[CoreSetup] = [base]
        for i in range(1, count):
            run_dir = base.run_dir / holder(i)
            run_dir.mkdir(parents=True, exist_ok=True)
            kek = run_dir / "webhook-kek"
            if not kek.exists():
                shutil.copyfile(base.kek_file, kek)
                os.chmod(kek, 0o600)
            self.setups.append(
                dataclasses.replace(
                    base,
                    run_dir=run_dir,
                    port=free_port(),
                    metrics_port=free_port(),
                    leadership={**base.leadership, "holder": holder(i)},
                )
            )
        self.processes: dict[int, ManagedProcess] = {}

    def process(self, index: int) -> ManagedProcess:
        if index == 0:
            return self.stack.processes["core"]
        return self.processes[index]

    def start(self, index: int) -> ManagedProcess:
        if index == 0:
            return self.stack.start_core()
        process = self.setups[index].process().start()
        self.processes[index] = process
        return process

    def start_others(self) -> None:
        for i in range(1, len(self.setups)):
            self.start(i)

    def index_of(self, holder_name: str) -> int:
        return next(i for i in range(len(self.setups)) if holder(i) == holder_name)

    def kill(self, index: int) -> None:
        """SIGKILL: the replica crashes mid-whatever."""
        self.process(index).kill()

    def pause(self, index: int) -> None:
        os.killpg(self.process(index).pid, signal.SIGSTOP)

    def resume(self, index: int) -> None:
        os.killpg(self.process(index).pid, signal.SIGCONT)

    def log(self, index: int) -> Path:
        return self.setups[index].run_dir / "core.log"

    def stop_others(self) -> dict[str, int | None]:
        codes = {}
        for i, process in sorted(self.processes.items()):
            self.resume_quietly(process)
            codes[holder(i)] = process.stop()
        self.processes.clear()
        return codes

    @staticmethod
    def resume_quietly(process: ManagedProcess) -> None:
        if process.running:
            os.killpg(process.pid, signal.SIGCONT)
