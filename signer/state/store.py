"""The signer's durable state in one SQLite file: request-id guard, velocity counters, audit chain.

All access runs on one thread per process (StoreThread), which commits in
groups: it takes every operation waiting, runs each inside its own savepoint
of one IMMEDIATE transaction, commits once (WAL, synchronous=FULL: fsynced),
and only then hands each operation its result. So every audit record is
durable before its answer leaves, at one fsync per batch rather than per
decision. IMMEDIATE takes SQLite's write lock at the start, so several signer
processes sharing the file (the workers of one signer) serialise their
decide-and-reserve steps and two requests can never both pass a velocity cap.

Between processes the batch transaction is entered under an exclusive flock on
a lock file beside the database: SQLite's own busy handler polls by sleeping
(1, 2, 5 … 100 ms), which under contention left a worker asleep with the lock
free; flock queues the waiter in the kernel and wakes it the moment the holder
commits. While one worker holds the lock and fsyncs, the others' operations
queue up, so their next batches are larger: one fsync still serves many
decisions, across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from signer.audit.chain import GENESIS_HASH, seal_text
from signer.settle import Settled, deliver

T = TypeVar("T")
MAX_BATCH = 256
BUSY_TIMEOUT_MS = 10_000

# The schema in numbered steps: PRAGMA user_version is the last step applied; a file from a
# newer signer (a higher version) is refused rather than written with an older idea of it.
MIGRATIONS: tuple[str, ...] = (
    # 1: the audit chain, the request-id guard, velocity counters
    """
    CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY,
        record TEXT NOT NULL,
        record_hash TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        body_hash TEXT NOT NULL,
        response BLOB,            -- NULL while the signature is being made
        created_s REAL NOT NULL
    );
    -- One row per signed amount; cumulative is the running total per (key_id, asset), so the
    -- amount inside any window is two index lookups, however many rows there are.
    CREATE TABLE IF NOT EXISTS velocity (
        id INTEGER PRIMARY KEY,
        key_id TEXT NOT NULL,
        asset TEXT NOT NULL,
        time_s REAL NOT NULL,
        amount TEXT NOT NULL,     -- base units, decimal: amounts exceed SQLite's 64-bit integers
        cumulative TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS velocity_by_time ON velocity (key_id, asset, time_s);
    """,
    # 2: velocity counters are buckets ("key:<id>" per exact key, "pattern:<p>" shared by every
    # key a pattern matches); the guard is pruned by age
    """
    UPDATE velocity SET key_id = 'key:' || key_id
     WHERE key_id NOT LIKE 'key:%' AND key_id NOT LIKE 'pattern:%';
    CREATE INDEX IF NOT EXISTS requests_by_time ON requests (created_s);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreUnavailable(Exception):
    """The state file could not be written; nothing from the failed batch is durable."""


def open_db(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        migrate(conn)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Applies the steps past the file's user_version, each in its own transaction."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"state schema version {version} is newer than this signer's {SCHEMA_VERSION}"
        )
    for step in range(version, SCHEMA_VERSION):
        # One script per step, inside one transaction with its version bump: a step is
        # applied whole or not at all (a crash half-way leaves the previous version).
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]}\nPRAGMA user_version = {step + 1};\nCOMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


# -- operations; each runs on the store thread inside the batch transaction


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, record_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


def append_audit(conn: sqlite3.Connection, fields: dict[str, Any]) -> str:
    seq, prev_hash = head(conn)
    text, record_hash = seal_text(fields, seq + 1, prev_hash)
    conn.execute(
        "INSERT INTO audit (seq, record, record_hash) VALUES (?, ?, ?)",
        (seq + 1, text, record_hash),
    )
    return record_hash


@dataclass(frozen=True)
class RequestRow:
    body_hash: str
    response: bytes | None


def lookup_request(conn: sqlite3.Connection, request_id: str) -> RequestRow | None:
    row = conn.execute(
        "SELECT body_hash, response FROM requests WHERE request_id = ?", (request_id,)
    ).fetchone()
    return None if row is None else RequestRow(row[0], row[1])


def claim_request(conn: sqlite3.Connection, request_id: str, body_hash: str, now_s: float) -> None:
    conn.execute(
        "INSERT INTO requests (request_id, body_hash, response, created_s) VALUES (?, ?, NULL, ?)",
        (request_id, body_hash, now_s),
    )


def complete_request(conn: sqlite3.Connection, request_id: str, response: bytes) -> None:
    conn.execute("UPDATE requests SET response = ? WHERE request_id = ?", (response, request_id))


def release_request(conn: sqlite3.Connection, request_id: str) -> None:
    conn.execute("DELETE FROM requests WHERE request_id = ? AND response IS NULL", (request_id,))


def _latest(
    conn: sqlite3.Connection, key_id: str, asset: str, at_or_before_s: float | None = None
) -> tuple[float, int] | None:
    sql = "SELECT time_s, cumulative FROM velocity WHERE key_id = ? AND asset = ?"
    args: tuple[Any, ...] = (key_id, asset)
    if at_or_before_s is not None:
        sql += " AND time_s <= ?"
        args += (at_or_before_s,)
    row = conn.execute(sql + " ORDER BY time_s DESC, id DESC LIMIT 1", args).fetchone()
    return None if row is None else (float(row[0]), int(row[1]))


def velocity_used(
    conn: sqlite3.Connection, key_id: str, asset: str, window_s: int, now_s: float
) -> int:
    """Amount counted in bucket key_id for asset within (now_s - window_s, now_s]."""
    latest = _latest(conn, key_id, asset)
    if latest is None:
        return 0
    before = _latest(conn, key_id, asset, now_s - window_s)
    return latest[1] - (0 if before is None else before[1])


def reserve(conn: sqlite3.Connection, key_id: str, asset: str, amount: int, now_s: float) -> None:
    latest = _latest(conn, key_id, asset)
    # Times only move forward per counter, so a clock stepping back cannot hide amounts.
    time_s = now_s if latest is None else max(now_s, latest[0])
    cumulative = amount + (0 if latest is None else latest[1])
    conn.execute(
        "INSERT INTO velocity (key_id, asset, time_s, amount, cumulative) VALUES (?, ?, ?, ?, ?)",
        (key_id, asset, time_s, str(amount), str(cumulative)),
    )


def prune(
    conn: sqlite3.Connection, now_s: float, requests_keep_s: float, velocity_keep_s: float
) -> tuple[int, int]:
    """Drops request-id guard rows older than requests_keep_s (a request that old is refused
    by its validity window before the guard is read) and velocity rows older than
    velocity_keep_s (the longest window), keeping per counter the newest row at or before
    the cutoff: velocity_used subtracts its cumulative. Returns (requests, velocity) dropped."""
    requests = conn.execute(
        "DELETE FROM requests WHERE created_s < ?", (now_s - requests_keep_s,)
    ).rowcount
    cutoff = now_s - velocity_keep_s
    velocity = conn.execute(
        """DELETE FROM velocity WHERE time_s < ? AND id NOT IN (
               SELECT max(id) FROM velocity WHERE time_s < ? GROUP BY key_id, asset)""",
        (cutoff, cutoff),
    ).rowcount
    return requests, velocity


def audit_rows(conn: sqlite3.Connection) -> Iterator[tuple[str, str]]:
    yield from conn.execute("SELECT record, record_hash FROM audit ORDER BY seq")


# -- the thread


# Where an operation's outcome goes: a concurrent Future (sync callers), or an asyncio
# future with its loop, settled together with the rest of its batch in one loop wake-up.
Target: TypeAlias = Future[Any] | tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]
Op: TypeAlias = tuple[Callable[[sqlite3.Connection], Any], Target]
Outcome: TypeAlias = tuple[Target, Any, BaseException | None]


def lock_path(db_path: Path) -> Path:
    """The lock file every process writing db_path takes around its transactions."""
    return db_path.with_name(db_path.name + ".lock")


@contextlib.contextmanager
def exclusive(lock_fd: int) -> Iterator[None]:
    """The cross-process write lock; flock blocks in the kernel (the GIL released)."""
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)


class StoreThread:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_db(path)
        self._lock_fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="store", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.submit(fn).result()

    async def acall(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, (loop, future)))
        return await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._conn.close()
        os.close(self._lock_fd)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    stop = True
                    break
                batch.append(op)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[Op]) -> None:
        outcomes: list[Outcome] = []
        conn = self._conn
        with exclusive(self._lock_fd):
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, target in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        result = fn(conn)
                    except Exception as exc:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        outcomes.append((target, None, _unavailable(exc)))
                    else:
                        conn.execute("RELEASE op")
                        outcomes.append((target, result, None))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                failure = StoreUnavailable(f"state database {self.path}: {exc}")
                outcomes = [(target, None, failure) for _, target in batch]
        # Only now, after the commit (or its failure), does any caller learn its outcome.
        _deliver(outcomes)


def _deliver(outcomes: list[Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[Settled]] = {}
    for target, result, error in outcomes:
        if isinstance(target, tuple):
            loop, future = target
            by_loop.setdefault(loop, []).append((future, result, error))
        elif error is None:
            target.set_result(result)
        else:
            target.set_exception(error)
    deliver(by_loop)


def _unavailable(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(str(exc))
    return exc
