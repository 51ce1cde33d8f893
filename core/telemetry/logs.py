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

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

PROCESS = "kassa-core"
REQUEST_ID: ContextVar[str | None] = ContextVar("kassa_request_id", default=None)
METADATA_KEY = "x-request-id"
SCHEMA_KEYS = ("ts", "level", "process", "logger", "msg", "request_id")
# A caller's id is taken only if it is short and plain: it is written into
# every log line of the call (the attacker here controls the metadata).
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(value: str | bytes | None) -> str | None:
    """The caller's x-request-id if it is acceptable, else None (a new one is made)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if value is None or not _ACCEPTED_ID.fullmatch(value):
        return None
    return value


class _SchemaFields(logging.Filter):
    """Puts the schema's own fields on each record; python-json-logger writes them first."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        record.level = record.levelname.lower()
        record.process_name = PROCESS
        record.request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
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


def handler() -> logging.Handler:
    """A stderr handler writing the schema (also for tests that format one record)."""
    out = logging.StreamHandler(sys.stderr)
    out.addFilter(_SchemaFields())
    out.setFormatter(formatter())
    return out


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
