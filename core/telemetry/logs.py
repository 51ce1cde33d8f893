"""The core's log lines: one JSON object per line on stderr, in the schema all three
processes share (python-json-logger does the formatting):

  ts          ISO-8601 UTC with milliseconds
  level       debug | info | warning | error | critical
  process     kassa-core
  logger      the logging logger's name
  msg         what happened, a fixed text (values go in fields)
  request_id  the request being served (x-request-id), or null outside one
  ...         the record's fields (`extra=`); `exc` holds a traceback

The request id is a context variable: the server interceptor (rpc.py) sets
it for each RPC, every line inside the call carries it, and the client
interceptor sends it on as x-request-id to the signer and the adapters.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

PROCESS = "kassa-core"
REQUEST_ID: ContextVar[str | None] = ContextVar("kassa_request_id", default=None)
METADATA_KEY = "x-request-id"
SCHEMA_KEYS = ("ts", "level", "process", "logger", "msg", "request_id")
_SCHEMA_SET = frozenset(SCHEMA_KEYS)
# A caller's id is taken only if it is short and plain: it is written into
# every log line of the call (the attacker here controls the metadata).
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# Request ids read from the OS 64 at a time (one getrandom a call was ~0.6 us of
# new_request_id's ~0.9 in a loop, and a system call on the serving thread); still
# os.urandom's bytes. A forked child never takes its parent's unused ones.
_IDS: list[str] = []
_IDS_PER_READ = 64
os.register_at_fork(after_in_child=_IDS.clear)


def new_request_id() -> str:
    """128 random bits as 32 hex digits, the shape uuid4().hex gave (no UUID object:
    every RPC without an x-request-id makes one; 2.1 -> 0.9 us in a loop)."""
    try:
        return _IDS.pop()
    except IndexError:
        digits = os.urandom(16 * _IDS_PER_READ).hex()
        _IDS.extend(digits[i : i + 32] for i in range(32, len(digits), 32))
        return digits[:32]


def accepted_request_id(value: str | bytes | None) -> str | None:
    """The caller's x-request-id if it is acceptable, else None (a new one is made)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if value is None or not _ACCEPTED_ID.fullmatch(value):
        return None
    return value


class _SchemaFields(logging.Filter):
    """Puts the schema's own fields on each record; python-json-logger writes them first.
    The process's marks (mark()) follow the record's own fields."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[str, Any] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        record.ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        record.level = record.levelname.lower()
        record.process_name = PROCESS
        record.request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        for key, value in self.marks.items():
            setattr(record, key, value)
        return True


def formatter() -> logging.Formatter:
    return JsonFormatter(
        "{ts}{level}{process_name}{name}{message}{request_id}",
        style="{",
        rename_fields={
            "process_name": "process",
            "name": "logger",
            "message": "msg",
            "exc_info": "exc",
        },
        json_ensure_ascii=False,
    )


class _SchemaHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The schema's stream handler (stderr), as handler() builds it: what DirectLine
    recognises as safe to write to without a LogRecord."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.schema_filter = _SchemaFields()
        self.schema_formatter = formatter()
        self.addFilter(self.schema_filter)
        self.setFormatter(self.schema_formatter)

    def as_built(self) -> bool:
        """Nothing added to or replaced in it since handler() built it."""
        return (
            self.formatter is self.schema_formatter
            and len(self.filters) == 1
            and self.filters[0] is self.schema_filter
        )


def handler() -> logging.Handler:
    """A stderr handler writing the schema (also for tests that format one record)."""
    return _SchemaHandler()


# json.dumps(line, ensure_ascii=False), without building an encoder per line: the
# same encoder python-json-logger's format uses for these values (str, float, None).
_encode = json.JSONEncoder(ensure_ascii=False).encode
# What that encoder does with a str (C), the one kind of value most fields hold.
_encode_str = json.encoder.encode_basestring


def json_value(value: Any) -> str:
    """`_encode(value)`: a str and None directly, a finite float as float.__repr__ (as
    the encoder does), anything else through the encoder itself."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return _encode(value)


def encoded_fields(fields: dict[str, Any]) -> str:
    """`, "key": value` for each field in order, as _encode writes a dict's items."""
    return "".join(f", {json_value(key)}: {json_value(value)}" for key, value in fields.items())


class _Clock:
    """The schema's `ts` of now, "2026-12-01T02:19:36.371+00:00": the date and time to
    the second made once per second (datetime's fromtimestamp and isoformat), the
    milliseconds appended. One tuple swapped whole: threads never mix two seconds."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def now(self) -> str:
        second, milli = divmod(time.time_ns() // 1_000_000, 1000)
        known = self._second
        if known[0] != second:
            head = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
            known = self._second = (second, head)
        return f"{known[1]}.{milli:03d}+00:00"


class DirectLine:
    """One INFO line of `logger` written straight to the schema's handler, the same
    bytes and fields the logging path writes, without a LogRecord.

    Why: the core writes one access line per RPC (core/telemetry/rpc.py), and through
    logging (the LogRecord, the logger and handler walk, the schema filter,
    python-json-logger's format) that line took ~110 us of the serving thread's CPU
    per call (empty calls through the core's server with the line on and off: 433
    and 322 us). Here it is the line's text joined from each value's JSON (the bytes
    json.dumps makes of the line's dict) and the same write and flush under the
    handler's lock: one write per line, unbuffered as before. Measured the same way:
    385 -> 333 us a call, 4 of 4 alternating rounds lower; 66 -> 27 us a line in a
    loop alone (docs/performance.md, "Ledger, single-posting RPC"); joined instead of
    a dict encoded, with the date made once a second: 8.4 -> 6.9 us.

    Only while the process logs as setup() left it: the line's logger and its
    ancestors have no filters, the only handler on the way is the schema's own
    (_SchemaHandler, unchanged), at INFO or below, and the logger is enabled. In any
    other configuration (a test's capture, a level, a second handler) `write`
    returns False and the caller logs the line the ordinary way.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._clock = _Clock()
        # The line's fixed middle: after the timestamp, up to the message.
        self._after_ts = (
            f'", "level": "info", "process": {json_value(PROCESS)}, "logger": {json_value(logger.name)}, '
            '"msg": '
        )

    def _handler(self) -> _SchemaHandler | None:
        logger: logging.Logger | None = self.logger
        if self.logger.disabled or not self.logger.isEnabledFor(logging.INFO):
            return None
        found = None
        while logger is not None:
            if logger.filters:
                return None
            for h in logger.handlers:
                if found is not None or type(h) is not _SchemaHandler:
                    return None
                found = h
            if not logger.propagate:
                break
            logger = logger.parent
        if found is None or found.level > logging.INFO or not found.as_built():
            return None
        return found

    def write(self, msg: str, request_id: str | None, fields: dict[str, Any]) -> bool:
        """Writes the line (the schema's keys, then `fields`); False if the caller must
        log it through logging instead (nothing was written)."""
        out = self._handler()
        if out is None:
            return False
        marks = out.schema_filter.marks
        if marks or not _SCHEMA_SET.isdisjoint(fields):  # a key repeated: as a dict does
            line = {
                "ts": self._clock.now(),
                "level": "info",
                "process": PROCESS,
                "logger": self.logger.name,
                "msg": msg,
                "request_id": request_id,
            }
            line.update(fields)
            line.update(marks)
            self._emit(out, _encode(line) + out.terminator, msg)
        else:
            text = self._head(msg, request_id) + encoded_fields(fields) + "}" + out.terminator
            self._emit(out, text, msg)
        return True

    def write_lines(
        self,
        msg: str,
        request_id: str | None,
        keys: frozenset[str],
        lines_fields_json: Sequence[str],
    ) -> bool:
        """`write` with the fields already encoded: one line of `msg` per item of
        `lines_fields_json` (each `encoded_fields` of a dict with exactly `keys`), all
        in one write and flush, at one instant (one `ts`); the process's marks after
        each line's fields, as `write` puts them. False (nothing written) when the
        lines must go through logging or a key is the schema's or a mark's: the caller
        then calls `write` for each.

        Why: the access line (one per RPC, core/telemetry/rpc.py) keeps its method's
        part encoded; a delivery process writes one line per attempt, with its mark,
        and through `write` each was a dict encoded whole (the mark's path) and a
        write system call of its own: 9.2 us a line to a file, 2.8 written 13 at a
        time here (thread CPU; the attempts recorded together: core/webhooks/worker.py)."""
        out = self._handler()
        if out is None or not _SCHEMA_SET.isdisjoint(keys):
            return False
        end = "}" + out.terminator
        marks = out.schema_filter.marks
        if marks:
            if not (keys.isdisjoint(marks) and _SCHEMA_SET.isdisjoint(marks)):
                return False
            end = encoded_fields(marks) + end
        head = self._head(msg, request_id)
        if len(lines_fields_json) == 1:  # the access line: no list, no join
            text = head + lines_fields_json[0] + end
        else:
            text = "".join([head + fields + end for fields in lines_fields_json])
        self._emit(out, text, msg)
        return True

    def _head(self, msg: str, request_id: str | None) -> str:
        """The bytes _encode makes of the line's dict up to its fields, joined from
        each value's own."""
        return "".join(
            (
                '{"ts": "',
                self._clock.now(),
                self._after_ts,
                json_value(msg),
                ', "request_id": ',
                json_value(request_id),
            )
        )

    def _emit(self, out: _SchemaHandler, text: str, msg: str) -> None:
        out.acquire()
        try:
            out.stream.write(text)
            out.stream.flush()
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:
            out.handleError(logging.makeLogRecord({"name": self.logger.name, "msg": msg}))
        finally:
            out.release()


def mark(fields: dict[str, Any]) -> None:
    """Every line the schema's handlers write from now on also carries `fields`, after
    the line's own: which of several processes of one kind wrote it (the delivery
    processes' `delivery_process`). A mark, not a filter of its own, so DirectLine
    still writes the process's lines."""
    for h in logging.getLogger().handlers:
        if isinstance(h, _SchemaHandler):
            h.schema_filter.marks.update(fields)


def _lean_records() -> None:
    """Log records without what the schema never writes: the caller's file and
    line (a walk up the stack per line), thread, process and multiprocessing
    names. The knobs of the logging HOWTO's "Optimization" section; measured
    on the delivery process's attempt line (one per delivery): 34 -> 27 us."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def setup(level: str = "info") -> None:
    """Every logger of the process writes the schema above to stderr, from `level` up."""
    _lean_records()
    root = logging.getLogger()
    root.handlers[:] = [handler()]
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def safe_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """`extra=` for logging: keys that LogRecord owns are renamed (message -> message_),
    since logging refuses to overwrite them."""
    return {(f"{k}_" if k in _STANDARD else k): v for k, v in fields.items()}
