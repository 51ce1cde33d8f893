"""The adapter's log calls: an event name and fields, written in the one schema of
telemetry.logs (msg is the event name; kassa-evm's main sets the formatter up)."""

from __future__ import annotations

import logging
from typing import Any

from telemetry.logs import safe_fields

_log = logging.getLogger("kassa.evm")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def log(level: str, event: str, **fields: Any) -> None:
    _log.log(_LEVELS.get(level, logging.ERROR), event, extra=safe_fields(fields))


def info(event: str, **fields: Any) -> None:
    log("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    log("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("error", event, **fields)
