"""A wire fuzzer for the core's gRPC services: requests built from each
method's descriptor with adversarial values in every field (and raw bytes
that are no message at all), sent with identity serialisers over a real
channel, judged by one oracle:

- never UNKNOWN or INTERNAL, and no internals in what comes back (exception
  class names, SQL, tracebacks, addresses);
- INVALID_ARGUMENT names at least one field, and every field it names is a
  field of the request (or says the bytes were undecodable);
- nothing written on a refusal (row counts of every table before and after);
- errors stay small (the input is never echoed unbounded).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import asyncpg
import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.support.grpc_errors import RichError, rich

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
# What a caller must never read in an error: Python exception names, SQL,
# tracebacks, driver names and the addresses of what the core talks to.
LEAK = re.compile(
    r"Traceback|asyncpg|psycopg|postgres|\b[A-Z][A-Za-z]*(Error|Exception)\b|"
    r"\bSELECT\b|\bINSERT INTO\b|\bUPDATE \w+ SET\b|\bWHERE\b|\$\d+\b|"
    r"127\.0\.0\.1|localhost:\d+|File \"",
)
MAX_ERROR_BYTES = 8192
STREAM_TIMEOUT_S = 0.5
UNARY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    request: type[Message]
    streaming: bool

    @property
    def path(self) -> str:
        return f"{self.service}/{self.name}"

    @property
    def fields(self) -> set[str]:
        descriptor = self.request.DESCRIPTOR
        # A oneof's name is a field a violation may name ("amount": one of price or asset_amount).
        return {f.name for f in descriptor.fields} | {o.name for o in descriptor.oneofs}


def methods(services: tuple[str, ...]) -> list[Method]:
    pool = descriptor_pool.Default()
    found = []
    for name in services:
        service = pool.FindServiceByName(name)
        for m in service.methods:
            assert not m.client_streaming, m.full_name
            found.append(
                Method(
                    name,
                    m.name,
                    message_factory.GetMessageClass(m.input_type),
                    m.server_streaming,
                )
            )
    return found


def invoke(
    channel: grpc.Channel, method: Method, payload: bytes, answers: list[bytes] | None = None
) -> tuple[grpc.StatusCode, RichError | None]:
    """Sends raw bytes; the status code and the rich error (None on OK or without
    details). The raw answers are appended to `answers`."""
    path = f"/{method.service}/{method.name}"
    sink = answers if answers is not None else []
    try:
        if method.streaming:
            call = channel.unary_stream(path)(payload, timeout=STREAM_TIMEOUT_S)
            for answer in call:
                sink.append(answer)
        else:
            sink.append(channel.unary_unary(path)(payload, timeout=UNARY_TIMEOUT_S))
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        if method.streaming and code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK, None  # a valid stream that stayed open
        try:
            return code, rich(exc)
        except AssertionError:
            return code, RichError(code, exc.details() or "", "", "", [], {})  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, None


class RowCounter:
    """Row counts of every table, on a connection of its own loop."""

    def __init__(self, dsn: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(dsn))
        tables = self.loop.run_until_complete(
            self.conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        )
        # Names from pg_tables, quoted: no input of anyone's.
        self.query = "SELECT " + ", ".join(  # noqa: S608
            f'(SELECT count(*) FROM "{t["tablename"]}") AS "{t["tablename"]}"'  # noqa: S608
            for t in tables
        )

    def count(self) -> dict[str, int]:
        return dict(self.loop.run_until_complete(self.conn.fetchrow(self.query)))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


# --- values ------------------------------------------------------------------------

NASTY_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "x" * 5000,
    "\n",
    "merchants/acme\n",
    "merchants/acme",
    "merchants/acme/invoices/0000",
    "merchants/acme/webhookEndpoints/e",
    "merchants/acme/apiKeys/k",
    "merchants/other",
    "merchants/rival",
    "merchants/rival/invoices/-",
    "merchants/rival/webhookEndpoints/-",
    "merchants/-",
    "merchants/../acme",
    "merchants/acme/invoices/",
    "-1",
    "0",
    "1",
    "25.00",
    "1e400",
    "9" * 90,
    "0x" + "aB" * 20,
    "0x" + "ab" * 20 + "\n",
    "eip155:31337/erc20:0x00000000000000000000000000000000000000aa",
    "eip155:31337/slip44:60",
    "USD",
    "usd",
    "invoice.paid",
    "invoice.*",
    "http://127.1/",
    "https://[64:ff9b::7f00:1]/x",
    "https://0x7f000001/",
    "https://hooks.invalid/x",
    "%s%n%x",
    "' OR 1=1 --",
    "\u202e\ufeff",
    "💸" * 10,
    "ledger:write",
    "invoices:read",
    "kassa_x_y",
]
INT32_EDGES = [0, 1, -1, 2**31 - 1, -(2**31)]
UINT32_EDGES = [0, 1, 2**31 - 1, 2**31, 2**32 - 1]
INT64_EDGES = [0, 1, -1, 2**63 - 1, -(2**63)]
UINT64_EDGES = [0, 1, 2**63 - 1, 2**63, 2**64 - 1]
TIMESTAMP_SECONDS = [
    0,
    1_700_000_000,
    -62_135_596_800,
    -62_135_596_801,
    253_402_300_799,
    253_402_300_800,
    2**62,
    -(2**62),
]
NANOS = [0, 999_999_999, 1_000_000_000, -1]

_F = FieldDescriptor


def _scalar(draw: st.DrawFn, field: FieldDescriptor) -> object:
    kind = field.type
    if kind == _F.TYPE_STRING:
        return draw(st.sampled_from(NASTY_STRINGS) | st.text(max_size=40))
    if kind == _F.TYPE_BYTES:
        return draw(st.binary(max_size=64))
    if kind == _F.TYPE_BOOL:
        return draw(st.booleans())
    if kind in (_F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32):
        return draw(st.sampled_from(INT32_EDGES) | st.integers(-(2**31), 2**31 - 1))
    if kind in (_F.TYPE_UINT32, _F.TYPE_FIXED32):
        return draw(st.sampled_from(UINT32_EDGES) | st.integers(0, 2**32 - 1))
    if kind in (_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64):
        return draw(st.sampled_from(INT64_EDGES))
    if kind in (_F.TYPE_UINT64, _F.TYPE_FIXED64):
        return draw(st.sampled_from(UINT64_EDGES) | st.integers(0, 2**64 - 1))
    if kind == _F.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return draw(st.sampled_from([*known, 99, -1]))
    if kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return draw(st.floats(allow_nan=True))
    raise AssertionError(f"no strategy for {field.full_name}")


def _fill(draw: st.DrawFn, message: Message, depth: int) -> None:
    descriptor: Descriptor = message.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Timestamp":
        message.seconds = draw(st.sampled_from(TIMESTAMP_SECONDS))  # type: ignore[attr-defined]
        message.nanos = draw(st.sampled_from(NANOS))  # type: ignore[attr-defined]
        return
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(draw(st.integers(0, 3))):
                key = draw(st.sampled_from(NASTY_STRINGS[:12]) | st.text(max_size=10))
                if value_field.type == _F.TYPE_MESSAGE:
                    if depth < 3:
                        _fill(draw, target[key], depth + 1)
                else:
                    target[key] = _scalar(draw, value_field)
            continue
        if field.is_repeated:
            target = getattr(message, field.name)
            for _ in range(draw(st.integers(0, 3))):
                if field.type == _F.TYPE_MESSAGE:
                    if depth < 3:
                        _fill(draw, target.add(), depth + 1)
                else:
                    target.append(_scalar(draw, field))
            continue
        if field.type == _F.TYPE_MESSAGE:
            if depth < 3:
                _fill(draw, getattr(message, field.name), depth + 1)
                if not message.HasField(field.name):
                    getattr(message, field.name).SetInParent()
            continue
        setattr(message, field.name, _scalar(draw, field))


@st.composite
def requests(draw: st.DrawFn, method: Method) -> bytes:
    """The bytes of one request: a nasty message, or raw bytes, or a message cut or flipped."""
    message = method.request()
    _fill(draw, message, 0)
    encoded = message.SerializeToString()
    how = draw(st.sampled_from(["message", "message", "message", "raw", "cut", "flip"]))
    if how == "raw":
        return draw(st.binary(max_size=128))
    if how == "cut" and encoded:
        return encoded[: draw(st.integers(0, len(encoded) - 1))]
    if how == "flip" and encoded:
        at = draw(st.integers(0, len(encoded) - 1))
        return encoded[:at] + bytes([encoded[at] ^ draw(st.integers(1, 255))]) + encoded[at + 1 :]
    return encoded


def poisoned(method: Method) -> bytes:
    """Every string field a NUL and past its bound, every number at its top: wrong in every way."""
    message = method.request()
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated or field.type == _F.TYPE_MESSAGE:
            continue
        if field.type == _F.TYPE_STRING:
            setattr(message, field.name, "\x00" * 5000)
        elif field.type in (_F.TYPE_UINT64, _F.TYPE_FIXED64):
            setattr(message, field.name, 2**64 - 1)
        elif field.type in (_F.TYPE_UINT32, _F.TYPE_FIXED32):
            setattr(message, field.name, 2**32 - 1)
        elif field.type in (_F.TYPE_INT32, _F.TYPE_SINT32):
            setattr(message, field.name, -1)
    return message.SerializeToString()


def judge(method: Method, code: grpc.StatusCode, error: RichError | None) -> None:
    assert code in ALLOWED, (method.path, code, error)
    if error is None:
        return
    text = error.message + " ".join(error.fields) + " ".join(error.metadata.values())
    leak = LEAK.search(error.message)
    assert leak is None, (method.path, leak.group(0), error.message)
    assert len(text.encode()) < MAX_ERROR_BYTES, (method.path, len(text))
    if code == grpc.StatusCode.INVALID_ARGUMENT and error.reason != "MESSAGE_UNDECODABLE":
        assert error.fields, (method.path, error)
        for field in error.fields:
            root = re.split(r"[.\[]", field, maxsplit=1)[0]
            assert root in method.fields, (method.path, field, sorted(method.fields))


def one_example(
    method: Method,
    data: st.DataObject,
    channel: grpc.Channel,
    rows: RowCounter,
    never_see: bytes | None = None,
) -> None:
    """One request; `never_see`: bytes no answer to this caller may contain
    (another merchant's name, for a merchant's key)."""
    payload = data.draw(requests(method), label="payload")
    before = rows.count()
    answers: list[bytes] = []
    code, error = invoke(channel, method, payload, answers)
    judge(method, code, error)
    if never_see is not None:
        assert not any(never_see in a for a in answers), (method.path, "cross-merchant read")
    if code != grpc.StatusCode.OK:
        assert rows.count() == before, (method.path, code, error)
