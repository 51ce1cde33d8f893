"""The log schema and request ids, as pure functions (the processes' lines are checked in
tests/e2e/test_operability.py)."""

from __future__ import annotations

import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from telemetry.logs import (
    REQUEST_ID,
    SCHEMA_KEYS,
    JsonFormatter,
    accepted_request_id,
    safe_fields,
)
from telemetry.metrics import parse_listen, split_method


def test_a_plain_short_id_is_taken_and_anything_else_is_not() -> None:
    assert accepted_request_id("req-1.a:b_C") == "req-1.a:b_C"
    assert accepted_request_id(b"abc") == "abc"
    for hostile in ("", "x" * 65, 'a"b', "a\nb", "a b", "ü", "abc\n"):
        assert accepted_request_id(hostile) is None, hostile


@given(st.text(max_size=100))
def test_an_accepted_id_is_always_short_and_plain(value: str) -> None:
    taken = accepted_request_id(value)
    assert taken is None or (taken == value and 0 < len(value) <= 64 and value.isascii())
    assert taken is None or not any(c in value for c in ' "\n\\')


def _format(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "kassa.x", "levelname": "WARNING", "msg": "hello %s", "args": ("you",)}
    )
    for key, value in safe_fields(dict(extra)).items():
        setattr(record, key, value)
    return dict(json.loads(JsonFormatter("kassa-core").format(record)))


def test_a_line_has_the_schema_keys_first_then_its_fields() -> None:
    token = REQUEST_ID.set("r-1")
    try:
        line = _format(chain="eip155:1", message="clash", tokens=("a", 1))
    finally:
        REQUEST_ID.reset(token)
    assert list(line)[:6] == list(SCHEMA_KEYS)
    assert line["process"] == "kassa-core" and line["level"] == "warning"
    assert line["msg"] == "hello you" and line["request_id"] == "r-1"
    assert line["chain"] == "eip155:1" and line["tokens"] == ["a", 1]
    assert line["message_"] == "clash"
    assert str(line["ts"]).endswith("+00:00")


def test_outside_a_request_the_id_is_null() -> None:
    assert _format()["request_id"] is None


def test_method_and_listen_parsing() -> None:
    assert split_method("/kassa.core.v1.InvoiceService/CreateInvoice") == (
        "kassa.core.v1.InvoiceService",
        "CreateInvoice",
    )
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", ":9464", "host:", "host:0", "host:70000", "host:x"):
        try:
            parse_listen(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
