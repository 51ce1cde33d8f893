"""datetime to google.protobuf.Timestamp, fast."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(when: datetime) -> Timestamp:
    """As Timestamp.FromDatetime (naive means UTC), by integer arithmetic.

    FromDatetime goes through utctimetuple and calendar.timegm: four calls per
    snapshot made it a fifth of rendering a block's 5,000 event snapshots.
    """
    delta = when - (_NAIVE_EPOCH if when.tzinfo is None else _EPOCH)
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)
