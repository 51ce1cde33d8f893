"""core/telemetry/logs.py's formatter takes a shorter way to a plain record's line
(the access line, one per RPC): the line must be python-json-logger's, byte for
byte, key order included, whatever the record's fields hold."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter

from core.telemetry import logs

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.datetimes(timezones=st.just(UTC))
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_extras = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k not in _STANDARD), _values, max_size=6
)


def _record(extra: dict[str, Any], msg: Any, args: tuple[Any, ...]) -> logging.LogRecord:
    return logging.getLogger("kassa.access").makeRecord(
        "kassa.access", logging.INFO, "(unknown file)", 0, msg, args, None, extra=extra
    )


def _both(record: logging.LogRecord) -> tuple[str, str]:
    formatter = logs.formatter()
    assert isinstance(formatter, JsonFormatter)
    # python-json-logger's own way, on the same formatter and record.
    return formatter.format(record), JsonFormatter.format(formatter, record)


@given(_extras, st.sampled_from(["rpc", "hello %s", "%d%%"]), st.booleans(), st.booleans())
def test_a_plain_record_is_the_same_line_as_python_json_loggers(
    extra: dict[str, Any], msg: str, with_schema: bool, in_request: bool
) -> None:
    record = _record(extra, msg, ("you",) if "%s" in msg else (7,) if "%d" in msg else ())
    token = logs.REQUEST_ID.set("req-1" if in_request else None)
    try:
        if with_schema:  # as the handler's filter leaves it; else the schema keys are null
            assert logs.handler().filter(record)
    finally:
        logs.REQUEST_ID.reset(token)
    lean, reference = _both(record)
    assert lean == reference


def test_the_access_line_is_the_same_line() -> None:
    record = _record(
        {
            "method": "/kassa.ledger.v1.LedgerService/CreateTransfers",
            "caller": "merchants/-/apiKeys/0123456789abcdef",
            "code": "OK",
            "reason": "",
            "duration_ms": 1.234,
            "_private": 1,
        },
        "rpc",
        (),
    )
    logs.handler().filter(record)
    lean, reference = _both(record)
    assert lean == reference
    assert lean.startswith('{"ts": "') and '"_private"' not in lean
    assert lean.endswith('"code": "OK", "reason": "", "duration_ms": 1.234}')


def test_a_record_with_a_traceback_a_stack_or_a_dict_message_is_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.getLogger("kassa.x").makeRecord(
            "kassa.x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    stacked = _record({"a": 1}, "here", ())
    stacked.stack_info = "Stack (most recent call last):\n  File x"
    as_dict = _record({}, {"event": "x", "n": 1}, ())
    for record in (failed, stacked, as_dict):
        lean, reference = _both(record)
        assert lean == reference


def test_a_value_json_does_not_know_is_written_as_python_json_logger_writes_it() -> None:
    record = _record({"when": datetime(2026, 11, 30, tzinfo=UTC), "what": object}, "x", ())
    lean, reference = _both(record)
    assert lean == reference and '"when": "2026-11-30T00:00:00+00:00"' in lean
