"""Pure: the subject and headers of an outbox event, and where a relay resumes."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A NATS subject token: no dots, spaces or wildcards (*, >).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Event types are dotted lowercase words (invoice.paid, payment.reorged).
_EVENT_TYPE = re.compile(r"[a-z_]{1,32}(\.[a-z_]{1,32}){1,3}")
# Events without a merchant (platform-wide) go under this token.
PLATFORM = "_platform"
SEQUENCE_HEADER = "Kassa-Sequence"
MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID_HEADER = "Nats-Expected-Last-Msg-Id"


def is_prefix(prefix: str) -> bool:
    return all(_TOKEN.fullmatch(t) for t in prefix.split("."))


def subject(prefix: str, merchant_id: str, event_type: str) -> str:
    """<prefix>.<merchant>.<event type>: a consumer filters by merchant
    (kassa.events.acme.>) or by event type (kassa.events.*.invoice.paid)."""
    assert is_prefix(prefix), prefix
    merchant = merchant_id or PLATFORM
    assert _TOKEN.fullmatch(merchant), merchant
    assert _EVENT_TYPE.fullmatch(event_type), event_type
    return f"{prefix}.{merchant}.{event_type}"


def wildcard(prefix: str) -> str:
    assert is_prefix(prefix), prefix
    return f"{prefix}.>"


@dataclass(frozen=True)
class Published:
    """The last event the stream holds: its outbox sequence and event id."""

    sequence: int
    event_id: str


def headers(event_id: str, sequence: int, previous: Published | None) -> dict[str, str]:
    """Deduplication by event id; the stream refuses the message unless the
    previous event is the stream's last (no gap, no reorder)."""
    assert sequence > 0, sequence
    assert previous is None or previous.sequence < sequence, (previous, sequence)
    out = {MSG_ID_HEADER: event_id, SEQUENCE_HEADER: str(sequence)}
    if previous is not None:
        out[EXPECTED_LAST_MSG_ID_HEADER] = previous.event_id
    return out


def resume_after(last_in_stream: Published | None, outbox_floor: int) -> int:
    """The outbox sequence to read after: the stream's last, or (an empty
    stream) the configured floor (0: the whole outbox; a deployment that turns
    the relay on late may start from the head)."""
    assert outbox_floor >= 0, outbox_floor
    if last_in_stream is None:
        return outbox_floor
    return last_in_stream.sequence
