"""The access line written without a LogRecord (core.telemetry.logs.DirectLine) is the
line the logging path writes, byte for byte, and is written only while the process
logs as logs.setup() left it; otherwise the caller logs it the ordinary way."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from unittest import mock

import grpc
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from core.telemetry import logs, rpc
from tests.support.log_lines import assert_same_line, schema_only


def _fields(caller: str, reason: str, duration_ms: float) -> dict[str, object]:
    values = ("/kassa.ledger.v1.LedgerService/CreateTransfers", caller, "OK", reason, duration_ms)
    return dict(zip(rpc.ACCESS_FIELDS, values, strict=True))


text = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    caller=text,
    reason=text,
    duration_ms=st.floats(0, 1e6, allow_nan=False),
    request_id=st.none() | text,
)
def test_the_direct_line_is_the_logging_line(
    caller: str, reason: str, duration_ms: float, request_id: str | None
) -> None:
    with schema_only() as out:
        fields = _fields(caller, reason, duration_ms)
        token = logs.REQUEST_ID.set(request_id)
        try:
            rpc.access.info("rpc", extra=fields)
        finally:
            logs.REQUEST_ID.reset(token)
        assert rpc._ACCESS_LINE.write("rpc", request_id, fields)
    # Lines end in "\n" only (a U+2028 in a value is not a line break of the log).
    logged, direct, rest = out.getvalue().split("\n")
    assert rest == ""
    assert_same_line(logged, direct)


def test_one_line_per_write_flushed_at_once() -> None:
    with schema_only() as stream:
        assert rpc._ACCESS_LINE.write("rpc", "id-1", _fields("me", "", 1.5))
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "id-1" and line["level"] == "info"
    assert line["logger"] == "kassa.access" and line["process"] == "kassa-core"
    assert stream.getvalue().count("\n") == 1


def test_another_configuration_is_left_to_logging() -> None:
    with schema_only() as stream:
        _refused_unless_as_setup_left_it()
    assert stream.getvalue() == ""
    # pytest's capture handlers on the root logger (here, outside schema_only): the same.
    assert not rpc._ACCESS_LINE.write("rpc", None, _fields("me", "", 1.5))


def _refused_unless_as_setup_left_it() -> None:
    fields = _fields("me", "", 1.5)
    access = rpc.access
    # A second handler (a test's capture, an operator's file) sees every line.
    extra = logging.StreamHandler(io.StringIO())
    access.addHandler(extra)
    try:
        assert not rpc._ACCESS_LINE.write("rpc", None, fields)
    finally:
        access.removeHandler(extra)
    # A filter on the way, a level above INFO, a disabled logger, a changed handler.
    only = logging.Filter("nothing")
    access.addFilter(only)
    try:
        assert not rpc._ACCESS_LINE.write("rpc", None, fields)
    finally:
        access.removeFilter(only)
    access.setLevel(logging.WARNING)
    try:
        assert not rpc._ACCESS_LINE.write("rpc", None, fields)
    finally:
        access.setLevel(logging.NOTSET)
    access.disabled = True
    try:
        assert not rpc._ACCESS_LINE.write("rpc", None, fields)
    finally:
        access.disabled = False
    (handler,) = logging.getLogger().handlers
    handler.setFormatter(logging.Formatter())
    assert not rpc._ACCESS_LINE.write("rpc", None, fields)


def test_a_plain_stream_handler_is_not_taken_for_the_schemas() -> None:
    with schema_only():
        root = logging.getLogger()
        root.handlers[:] = [logging.StreamHandler(io.StringIO())]
        assert not rpc._ACCESS_LINE.write("rpc", None, _fields("me", "", 1.5))


class _Context:
    """What _Done asks of a finished unary call's context."""

    def code(self) -> None:
        return None

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-request-id", "id-2"),)


def test_a_call_writes_the_access_fields_in_order() -> None:
    done = rpc._Done("/kassa.ledger.v1.LedgerService/CreateTransfers", lambda: "caller-1")
    with schema_only() as stream:
        token = logs.REQUEST_ID.set("id-2")
        try:
            done(_Context(), None, 0.0, None)
        finally:
            logs.REQUEST_ID.reset(token)
    line = json.loads(stream.getvalue())
    assert tuple(line) == (*logs.SCHEMA_KEYS, *rpc.ACCESS_FIELDS)
    assert line["request_id"] == "id-2" and line["caller"] == "caller-1"
    assert line["code"] == "OK" and line["reason"] == ""
    assert line["method"] == "/kassa.ledger.v1.LedgerService/CreateTransfers"


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from([*logs.SCHEMA_KEYS, "a", "b", "é"]) | text, json_value),
    marks=st.dictionaries(
        st.sampled_from(["delivery_process", "msg", "a"]), json_value, max_size=2
    ),
    request_id=st.none() | text,
)
def test_the_direct_line_is_the_dict_encoded_whatever_the_fields(
    fields: dict[str, object], marks: dict[str, object], request_id: str | None
) -> None:
    """Joined from each value's own encoding, the line is the bytes json makes of the
    whole dict (a NaN, an int, a list, a key repeating the schema's, the marks)."""
    line = logs.DirectLine(logging.getLogger("kassa.access"))
    with schema_only() as out:
        (handler,) = logging.getLogger().handlers
        handler.schema_filter.marks.update(marks)  # type: ignore[attr-defined]
        assert line.write("rpc", request_id, fields)
    written = out.getvalue()
    expected = {
        "ts": json.loads(written)["ts"],
        "level": "info",
        "process": "kassa-core",
        "logger": "kassa.access",
        "msg": "rpc",
        "request_id": request_id,
        **fields,
        **marks,
    }
    assert written == json.dumps(expected, ensure_ascii=False) + "\n"


@settings(max_examples=300, deadline=None)
@given(ns=st.lists(st.integers(0, 253_402_300_799 * 10**9), min_size=1, max_size=4))
def test_the_timestamp_is_datetimes_to_the_millisecond(ns: list[int]) -> None:
    """The clock's text for any instant (the second's text reused) is what datetime
    writes for that instant truncated to the millisecond."""
    clock = logs._Clock()
    for now_ns in sorted(ns) + ns:
        with mock.patch.object(logs.time, "time_ns", return_value=now_ns):
            text = clock.now()
        second, ms = divmod(now_ns // 10**6, 1000)
        at = datetime.fromtimestamp(second, UTC) + timedelta(milliseconds=ms)
        assert text == at.isoformat(timespec="milliseconds")


class _Ended:
    """A finished call's context: its code and the status details errors.abort sends."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        self._code = code
        status = status_pb2.Status(code=code.value[0])
        if reason:
            status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason))
        self.trailers = (
            ("x-request-id", "id-3"),
            ("grpc-status-details-bin", status.SerializeToString()),
        )

    def code(self) -> grpc.StatusCode:
        return self._code

    def trailing_metadata(self) -> tuple[tuple[str, object], ...]:
        return self.trailers


@settings(max_examples=200, deadline=None)
@given(
    code=st.sampled_from(list(grpc.StatusCode)),
    caller=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    reason=text,
    method=text,
    request_id=st.none() | text,
    marks=st.dictionaries(st.sampled_from(["delivery_process", "method"]), text, max_size=1),
)
def test_a_calls_line_is_the_fields_line(
    code: grpc.StatusCode,
    caller: str,
    reason: str,
    method: str,
    request_id: str | None,
    marks: dict[str, object],
) -> None:
    """What _Done writes (its fields encoded once per method and call) is the line of
    its fields as DirectLine.write and logging write it; an OK call's reason is ""."""
    done = rpc._Done(method, lambda: caller)
    with schema_only() as out:
        (handler,) = logging.getLogger().handlers
        handler.schema_filter.marks.update(marks)  # type: ignore[attr-defined]
        token = logs.REQUEST_ID.set(request_id)
        try:
            done(_Ended(code, reason), None, 0.0, None)
        finally:
            logs.REQUEST_ID.reset(token)
        written = out.getvalue()
        fields = dict(zip(rpc.ACCESS_FIELDS, (method, caller, code.name), strict=False))
        fields["reason"] = "" if code is grpc.StatusCode.OK else reason
        fields["duration_ms"] = json.loads(written)["duration_ms"]
        assert rpc._ACCESS_LINE.write("rpc", request_id, fields)
    line, again, rest = out.getvalue().split("\n")
    assert rest == ""
    assert_same_line(again, line)
