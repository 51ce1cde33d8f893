"""One JSON object per line on stderr, so log shippers need no parser."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def log(level: str, event: str, **fields: Any) -> None:
    record = {"ts": round(time.time(), 3), "level": level, "logger": "kassa-evm", "event": event}
    record.update(fields)
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def info(event: str, **fields: Any) -> None:
    log("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    log("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("error", event, **fields)
