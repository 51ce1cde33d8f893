"""The transactional outbox: events are written in the same transaction as
the change they announce.

Sequences come from the event_sequence row, whose lock is held until commit:
event-writing transactions therefore commit in sequence order, and a reader
that has seen N has seen everything at or below N.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import asyncpg

NOTIFY_CHANNEL = "kassa_events"


@dataclass(frozen=True)
class NewEvent:
    type: str
    merchant_id: str
    resource_name: str
    payload: bytes  # the serialized resource as it stood
    # Which message payload holds (core.render.events.RESOURCES).
    resource_type: str = "invoice"


def _uuid7s(n: int, unix_ms: int | None = None) -> list[str]:
    """n time-ordered (version 7, RFC 9562) UUIDs as hex, from one urandom call.

    Why version 7: `events_id_key` takes every event's id. Random (v4) ids
    land on random leaf pages of that index, all over it; ids that start with
    the millisecond they were made land at its right edge, on pages a block's
    10,000 events share. The events' COPY's backend CPU on a 195,000-event
    database, 16 alternations at load ~3: median 0.132 s against 0.172 s with
    v4 ids (docs/performance.md, Ingest). A v4 id's page is any of the
    index's leaf pages, so the table's size sets how many a block touches.

    Why by hand: Python 3.11 has no uuid7, and uuid.UUID costs ~9 us each
    (90 ms of a 10,000-event block); asyncpg parses the hex itself.

    Layout (RFC 9562 5.7): 48 bits of Unix time in milliseconds, the version,
    then 74 random bits (rand_a, rand_b; no counter). Uniqueness rests on
    those bits, as v4's rests on its 122: two ids of the same millisecond,
    from any process or replica, collide with probability 2^-74 a pair. The
    time prefix orders ids only roughly (clocks of replicas differ; ids of one
    millisecond are in random order): nothing reads order from an event id,
    the sequence orders events. The time in an id is also in the event's
    create_time, so it tells a reader nothing new."""
    if unix_ms is None:
        unix_ms = time.time_ns() // 1_000_000
    raw = bytearray(os.urandom(16 * n))
    for k, byte in enumerate((unix_ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")):
        raw[k::16] = bytes((byte,)) * n  # unix_ts_ms, big-endian
    raw[6::16] = bytes(b & 0x0F | 0x70 for b in raw[6::16])  # version 7
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 9562 variant
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


# The columns append copies, in the order of rows()' tuples.
COLUMNS = ("sequence", "id", "type", "merchant_id", "resource_name", "resource_type", "payload")


def rows(first: int, events: list[NewEvent]) -> list[tuple[object, ...]]:
    """The events' rows as COLUMNS, sequences from `first`, new ids."""
    ids = _uuid7s(len(events))
    return [
        (first + i, ids[i], e.type, e.merchant_id, e.resource_name, e.resource_type, e.payload)
        for i, e in enumerate(events)
    ]


async def append(conn: asyncpg.Connection, events: list[NewEvent]) -> int:
    """Writes events; returns the last sequence (0 when there were none)."""
    if not events:
        return 0
    assert conn.is_in_transaction(), "events must commit with the change they announce"
    last = int(
        await conn.fetchval(
            "UPDATE event_sequence SET last = last + $1 WHERE id = 1 RETURNING last", len(events)
        )
    )
    await conn.copy_records_to_table(
        "events", records=rows(last - len(events) + 1, events), columns=COLUMNS
    )
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return last
