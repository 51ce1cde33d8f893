"""The adapter's log calls: an event name and fields, written in the one schema of
adapters/evm/telemetry/logs.py (msg is the event name; kassa-evm's main sets the formatter up).

Node URLs are logged as scheme://host:port only: providers put API keys in
the path, the query or the user part (chain.node_urls_file keeps them out of
the config; this keeps them out of the logs).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from adapters.evm.telemetry.logs import safe_fields

_URL_FIELDS = ("url", "node")
_log = logging.getLogger("kassa.evm")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def redact_url(url: object) -> object:
    """scheme://host[:port] of a node URL; anything else unchanged."""
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host or ''}{port}"


def log(level: str, event: str, **fields: Any) -> None:
    for key in _URL_FIELDS:
        if key in fields:
            fields[key] = redact_url(fields[key])
    _log.log(_LEVELS.get(level, logging.ERROR), event, extra=safe_fields(fields))


def info(event: str, **fields: Any) -> None:
    log("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    log("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("error", event, **fields)
