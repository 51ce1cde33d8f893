"""[reconcile] configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ReconcileSettings:
    # Seconds between scheduled runs of every chain; 0: only on demand
    # (RunReconciliation, `kassactl reconcile`).
    interval_s: float = 0.0


def parse(raw: Mapping[str, object]) -> ReconcileSettings:
    unknown = set(raw) - {"interval_s"}
    if unknown:
        raise ValueError(f"reconcile: unknown keys {sorted(unknown)}")
    interval = raw.get("interval_s", 0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        raise ValueError("reconcile.interval_s must be a non-negative number of seconds")
    return ReconcileSettings(float(interval))
