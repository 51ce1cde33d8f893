"""CPU seconds of processes from /proc, for the benchmarks' per-operation CPU
figures (which a busy machine moves much less than wall-clock rates)."""

from __future__ import annotations

import os
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (index 0 is the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    fields = stat(pid)
    return (int(fields[11]) + int(fields[12])) * TICK_S


def cluster_cpu_s(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL cluster so far: the postmaster, its live
    children, and the children it has reaped (closed connections)."""
    fields = stat(postmaster)
    total = sum(int(f) for f in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = stat(int(entry.name))
            except OSError:
                continue  # gone meanwhile
            if int(child[1]) == postmaster:
                total += int(child[11]) + int(child[12])
    return total * TICK_S
