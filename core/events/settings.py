"""The [events] configuration table (StreamEvents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StreamSettings:
    # Events read ahead for one consumer; the core holds at most this many.
    buffer_events: int = 1000
    # A consumer whose buffer stays full this long is cut off
    # (RESOURCE_EXHAUSTED, CONSUMER_TOO_SLOW) and may resume from its cursor.
    stall_timeout_s: float = 30.0


def parse(table: dict[str, Any]) -> StreamSettings:
    unknown = sorted(set(table) - {"stream_buffer_events", "stream_stall_timeout_s"})
    if unknown:
        raise ValueError(f"events: unknown keys {unknown}")
    buffer_events = table.get("stream_buffer_events", StreamSettings.buffer_events)
    stall_s = table.get("stream_stall_timeout_s", StreamSettings.stall_timeout_s)
    if isinstance(buffer_events, bool) or not isinstance(buffer_events, int) or buffer_events < 1:
        raise ValueError("events.stream_buffer_events must be a positive integer")
    if isinstance(stall_s, bool) or not isinstance(stall_s, int | float) or stall_s <= 0:
        raise ValueError("events.stream_stall_timeout_s must be a positive number")
    return StreamSettings(buffer_events=buffer_events, stall_timeout_s=float(stall_s))
