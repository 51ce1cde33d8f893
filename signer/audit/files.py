"""The audit chain as files: reading it from the SQLite state file or a JSON-lines export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from signer.state import store

SQLITE_MAGIC = b"SQLite format 3\x00"


class AuditFileError(Exception):
    pass


def records_of(path: Path) -> Iterator[tuple[str, str | None]]:
    """(record JSON, stored hash) in file order: rows by seq for SQLite, lines for JSON lines."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise AuditFileError(f"cannot read {path}: {exc.strerror}") from None
    if magic == SQLITE_MAGIC:
        conn = store.open_db(path, readonly=True)
        try:
            yield from store.audit_rows(conn)
        finally:
            conn.close()
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line, None


def export(db_path: Path) -> Iterator[str]:
    for text, _ in records_of(db_path):
        yield json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")) + "\n"
