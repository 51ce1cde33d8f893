"""The telemetry contract of the three processes.

Each process owns its telemetry (core/telemetry, signer/telemetry,
adapters/evm/telemetry): the signer is audited on its own and shares no code
with the core, and the adapter imports neither. What an operator's tools
rely on must still be one thing: the same log schema fields, the same RPC
metric names and labels, the same access-log fields and request-id rules,
the same one-line refusal of a bad configuration key. This file turns the
small duplication into that tested contract. (The processes' real lines are
checked in tests/e2e/test_operability.py.)
"""

from __future__ import annotations

import json
import logging
import sys
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import adapters.evm.config_schema
import adapters.evm.telemetry.logs
import adapters.evm.telemetry.rpc
import core.config_schema
import core.telemetry.logs
import core.telemetry.rpc
import signer.config_schema
import signer.telemetry.logs
import signer.telemetry.rpc

LOGS = {
    "kassa-core": core.telemetry.logs,
    "kassa-signer": signer.telemetry.logs,
    "kassa-evm": adapters.evm.telemetry.logs,
}
RPC = [core.telemetry.rpc, signer.telemetry.rpc, adapters.evm.telemetry.rpc]
SCHEMA_CHECKS = [core.config_schema, adapters.evm.config_schema, signer.config_schema]
SCHEMA_KEYS = ("ts", "level", "process", "logger", "msg", "request_id")
by_process = pytest.mark.parametrize("process", sorted(LOGS))


def _format(logs: ModuleType, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "kassa.x", "levelname": "WARNING", "msg": "hello %s", "args": ("you",)}
    )
    for key, value in logs.safe_fields(dict(extra)).items():
        setattr(record, key, value)
    handler = logs.handler()
    assert handler.filter(record)
    return dict(json.loads(handler.format(record)))


@by_process
def test_a_line_has_the_schema_keys_first_then_its_fields(process: str) -> None:
    logs = LOGS[process]
    assert logs.SCHEMA_KEYS == SCHEMA_KEYS and process == logs.PROCESS
    token = logs.REQUEST_ID.set("r-1")
    try:
        line = _format(logs, chain="eip155:1", message="clash", tokens=("a", 1))
    finally:
        logs.REQUEST_ID.reset(token)
    assert list(line)[:6] == list(SCHEMA_KEYS)
    assert line["process"] == process and line["level"] == "warning"
    assert line["logger"] == "kassa.x"
    assert line["msg"] == "hello you" and line["request_id"] == "r-1"
    assert line["chain"] == "eip155:1" and line["tokens"] == ["a", 1]
    assert line["message_"] == "clash"
    assert str(line["ts"]).endswith("+00:00")


@by_process
def test_outside_a_request_the_id_is_null(process: str) -> None:
    assert _format(LOGS[process])["request_id"] is None


@by_process
def test_a_traceback_is_one_field_of_one_line(process: str) -> None:
    logs = LOGS[process]
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("kassa.x").makeRecord(
            "kassa.x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    handler = logs.handler()
    handler.filter(record)
    text = handler.format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert list(line)[:6] == list(SCHEMA_KEYS) and "ValueError: boom" in line["exc"]


@by_process
def test_a_plain_short_id_is_taken_and_anything_else_is_not(process: str) -> None:
    logs = LOGS[process]
    assert logs.accepted_request_id("req-1.a:b_C") == "req-1.a:b_C"
    assert logs.accepted_request_id(b"abc") == "abc"
    for hostile in ("", "x" * 65, 'a"b', "a\nb", "a b", "ü", "abc\n"):
        assert logs.accepted_request_id(hostile) is None, hostile
    assert logs.METADATA_KEY == "x-request-id"


@given(st.text(max_size=100))
def test_an_accepted_id_is_always_short_plain_and_the_same_everywhere(value: str) -> None:
    taken = {logs.accepted_request_id(value) for logs in LOGS.values()}
    assert len(taken) == 1
    (one,) = taken
    assert one is None or (one == value and 0 < len(value) <= 64 and value.isascii())
    assert one is None or not any(c in value for c in ' "\n\\')


def _shape(metric: Any) -> tuple[str, str, tuple[str, ...], tuple[float, ...]]:
    kind = type(metric).__name__
    labels = tuple(metric._labelnames)
    buckets = tuple(getattr(metric, "_upper_bounds", ()))
    return metric._name, kind, labels, buckets


def test_the_rpc_metrics_have_the_same_names_labels_and_buckets() -> None:
    shapes = {(_shape(m.REQUESTS), _shape(m.DURATION)) for m in RPC}
    assert len(shapes) == 1, shapes
    ((requests, duration),) = shapes
    assert requests[:3] == ("kassa_grpc_requests", "Counter", ("service", "method", "code"))
    assert duration[:3] == (
        "kassa_grpc_request_duration_seconds",
        "Histogram",
        ("service", "method"),
    )
    assert {m.ACCESS_FIELDS for m in RPC} == {("method", "caller", "code", "reason", "duration_ms")}


@pytest.mark.parametrize("rpc", RPC, ids=lambda m: m.__name__)
def test_method_and_listen_parsing(rpc: ModuleType) -> None:
    assert rpc.split_method("/kassa.core.v1.InvoiceService/CreateInvoice") == (
        "kassa.core.v1.InvoiceService",
        "CreateInvoice",
    )
    assert rpc.parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert rpc.parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", ":9464", "host:", "host:0", "host:70000", "host:x"):
        with pytest.raises(ValueError):
            rpc.parse_listen(bad)


class _Inner(msgspec.Struct, forbid_unknown_fields=True):
    confirmations: int = 1


class _Named(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class _Sample(msgspec.Struct, forbid_unknown_fields=True):
    chains: list[_Inner] = []
    named: list[_Named] = []
    enabled: bool = False


@pytest.mark.parametrize(
    "raw",
    [
        {"chains": [{"confirmation": 12}]},
        {"invoice": {}},
        {"enabled": 1},
        {"chains": [{"confirmations": "abc"}]},
        {"chains": [{"confirmations": True}]},
        {"named": [{}]},
    ],
)
def test_a_bad_key_is_the_same_one_line_in_every_process(raw: dict[str, Any]) -> None:
    lines = set()
    for schema in SCHEMA_CHECKS:
        with pytest.raises(schema.SchemaError) as caught:
            schema.check(raw, _Sample, "x.toml")
        lines.add(str(caught.value))
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("x.toml: ") and "\n" not in line
    assert any(key in line for key in ("chains[0]", "invoice", "enabled", "named[0].id")), line
