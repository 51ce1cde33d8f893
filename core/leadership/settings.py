"""[leadership] configuration."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

_HOLDER = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LeadershipSettings:
    # How long a leader that stopped answering (paused, cut off) keeps its
    # roles before another replica may take them; also the bound on how long
    # a paused leader's open transaction can hold a takeover back.
    lease_s: float = 10.0
    # This replica's name in leader_epochs.holder and the logs.
    holder: str = field(default_factory=default_holder)


def parse(raw: Mapping[str, object]) -> LeadershipSettings:
    unknown = set(raw) - {"lease_s", "holder"}
    if unknown:
        raise ValueError(f"leadership: unknown keys {sorted(unknown)}")
    lease = raw.get("lease_s", LeadershipSettings.lease_s)
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 1 <= lease <= 3600:
        raise ValueError("leadership.lease_s must be a number of seconds in 1..3600")
    holder = raw.get("holder")
    if holder is None:
        return LeadershipSettings(float(lease))
    if not isinstance(holder, str) or not _HOLDER.fullmatch(holder):
        raise ValueError("leadership.holder must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return LeadershipSettings(float(lease), holder)
