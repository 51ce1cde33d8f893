"""One JSON log schema for the three processes, and the request id that ties their lines together.

Every line is one JSON object on stderr:
  ts          ISO-8601 UTC with milliseconds
  level       debug | info | warning | error | critical
  process     kassa-core | kassa-signer | kassa-evm
  logger      the logging logger's name
  msg         what happened, a fixed text (values go in fields)
  request_id  the request being served (x-request-id), or null outside one
  ...         the record's fields (`extra=`), JSON values; `exc` holds a traceback

The request id is a context variable: the server interceptor sets it for
each RPC, every log line inside the call carries it, and the client
interceptor sends it on as `x-request-id` to the signer and the adapters.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

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


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "process": self.process,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line and not key.startswith("_"):
                line[key] = _json_value(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


def setup(process: str, level: str = "info") -> None:
    """Every logger of the process writes the schema above to stderr, from `level` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def safe_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """`extra=` for logging: keys that LogRecord owns are renamed (message -> message_),
    since logging refuses to overwrite them."""
    return {(f"{k}_" if k in _STANDARD else k): v for k, v in fields.items()}
