"""One JSON object per line on stderr, so log shippers need no parser.

Node URLs are logged as scheme://host:port only: providers put API keys in
the path, the query or the user part (chain.node_urls_file keeps them out of
the config; this keeps them out of the logs).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

_URL_FIELDS = ("url", "node")


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
    record = {"ts": round(time.time(), 3), "level": level, "logger": "kassa-evm", "event": event}
    record.update(fields)
    for key in _URL_FIELDS:
        if key in record:
            record[key] = redact_url(record[key])
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def info(event: str, **fields: Any) -> None:
    log("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    log("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("error", event, **fields)
