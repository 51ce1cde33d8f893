"""Refusals to start that kassa-core turns into one log line and exit 1 (core/main.py),
beside the database's, the schema's and the signer link's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListenError(Exception):
    """An address the core must listen on is taken or cannot be bound."""

    what: str  # "api" or "metrics"
    listen: str
    error: str

    def __str__(self) -> str:
        return f"cannot listen on {self.listen} ({self.what}): {self.error}"
