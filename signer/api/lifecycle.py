"""What a signer does around serving: hold its state directory alone, and audit the requests a
crash left admitted but unanswered.

One signer (one process, or one supervisor and its workers) serves a state directory at a
time: the orphan release below is only sound when no other process can still be signing one
of those requests, so the supervisor (or the single process) holds an exclusive flock on
the directory for as long as it serves.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from signer.state import store

log = logging.getLogger("signer.lifecycle")

OWNER_LOCK_NAME = "signer.serve.lock"


class StateInUse(Exception):
    """Another signer serves this state directory."""


def hold_state(state_dir: Path) -> int:
    """An fd holding the state directory's serve lock until it is closed (or the process
    ends); StateInUse when another signer holds it."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / OWNER_LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateInUse(f"another signer is serving the state in {state_dir}") from None
    return fd


def release_orphans(conn: sqlite3.Connection, cause: str) -> int:
    """On the store thread, with no worker running: every request admitted but never answered
    (its worker died between admission and recording the answer) gets its audit record, its
    request id released (a retry is admitted afresh) and its velocity reservation KEPT, as a
    cancellation does. No signature of it ever left the signer: the answer is recorded before
    it is sent. Returns how many there were."""
    rows = conn.execute(
        "SELECT request_id, body_hash FROM requests WHERE response IS NULL ORDER BY created_s"
    ).fetchall()
    for request_id, body_hash in rows:
        store.release_request(conn, request_id)
        store.append_audit(
            conn,
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "caller": {},
                "request_id": request_id,
                "request_hash": "",
                "decision": "REFUSED",
                "reason": "SIGNING_FAILED",
                "detail": {
                    "problem": "signer_stopped_unanswered",
                    "cause": cause,
                    "body_sha256": body_hash,
                    "velocity": "reservation kept: counted as spent",
                    "request_id_guard": "released",
                    "signature": "not returned",
                },
            },
        )
    if rows:
        log.warning("unanswered requests audited and released", extra={"count": len(rows)})
    return len(rows)
