"""The core's log schema in a test: the root logger as logs.setup() leaves it, writing
to a string, and lines compared as the logging path and DirectLine write them."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

from core.telemetry import logs

# The schema's timestamp (its own millisecond in each line) ends here.
TS_END = len('{"ts": "2026-12-01T02:19:36.371+00:00"')


@contextlib.contextmanager
def schema_only() -> Iterator[io.StringIO]:
    """The root logger as logs.setup() leaves it, writing to a string. Entered inside a
    test: pytest's own capture handlers sit on the root logger around each phase."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    handler = logs.handler()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def without_ts(line: str) -> dict[str, object]:
    parsed = dict(json.loads(line))
    assert isinstance(parsed.pop("ts"), str)
    return parsed


def assert_same_line(logged: str, direct: str) -> None:
    """Byte for byte but the timestamp, which has the same form."""
    assert logged[TS_END:] == direct[TS_END:]
    assert without_ts(logged) == without_ts(direct)
    assert list(json.loads(direct))[:6] == list(logs.SCHEMA_KEYS)
