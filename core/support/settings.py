"""[support] configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SupportSettings:
    # Accepting an underpaid invoice as paid and refunds need a second,
    # different operator's approval (ApproveSupportAction).
    require_second_approval: bool = False
    # A payout or refund not final this long after it was created is stuck.
    payout_stuck_after_s: float = 3600.0
    # A pending delivery with this many failed attempts makes its endpoint failing.
    webhook_failing_attempts: int = 3


def parse(raw: Mapping[str, object]) -> SupportSettings:
    known = {"require_second_approval", "payout_stuck_after_s", "webhook_failing_attempts"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"support: unknown keys {sorted(unknown)}")
    base = SupportSettings()
    approval = raw.get("require_second_approval", base.require_second_approval)
    if not isinstance(approval, bool):
        raise ValueError("support.require_second_approval must be true or false")
    stuck = raw.get("payout_stuck_after_s", base.payout_stuck_after_s)
    if isinstance(stuck, bool) or not isinstance(stuck, int | float) or stuck <= 0:
        raise ValueError("support.payout_stuck_after_s must be a positive number of seconds")
    attempts = raw.get("webhook_failing_attempts", base.webhook_failing_attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError("support.webhook_failing_attempts must be a whole number of at least 1")
    return SupportSettings(approval, float(stuck), attempts)
