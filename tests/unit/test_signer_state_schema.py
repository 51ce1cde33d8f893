"""The signer's SQLite state: schema versions in numbered steps, and pruning of the request-id
guard and velocity counters past their windows without changing any window's total."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.state import store
from signer.state.store import SCHEMA_VERSION, StoreUnavailable


def test_a_new_file_is_at_the_latest_version(tmp_path: Path) -> None:
    conn = store.open_db(tmp_path / "s.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_version_1_file_is_migrated_step_by_step(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(store.MIGRATIONS[0])  # a file written before versions (step 1 only)
    old.execute(
        "INSERT INTO velocity (key_id, asset, time_s, amount, cumulative) "
        "VALUES ('hot-1', 'a', 1.0, '5', '5')"
    )
    old.close()
    conn = store.open_db(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # Step 2: per-key counters became buckets; the amount is kept under the exact key's name.
    assert store.velocity_used(conn, "key:hot-1", "a", 100, 2.0) == 5
    conn.close()
    again = store.open_db(path)  # idempotent
    assert store.velocity_used(again, "key:hot-1", "a", 100, 2.0) == 5
    again.close()


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        store.open_db(path)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(1, 1000)), min_size=1, max_size=30),
    st.integers(1, 200),
    st.integers(1, 200),
)
def test_pruning_keeps_every_window_total(
    steps: list[tuple[int, int]], window_s: int, keep_s: int
) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    store.migrate(conn)
    now = 0.0
    for dt, amount in steps:
        now += dt
        store.reserve(conn, "pattern:hd:*", "a", amount, now)
    keep_s = max(keep_s, window_s)  # the server keeps at least the longest window
    before = store.velocity_used(conn, "pattern:hd:*", "a", window_s, now)
    store.prune(conn, now, requests_keep_s=60, velocity_keep_s=keep_s)
    assert store.velocity_used(conn, "pattern:hd:*", "a", window_s, now) == before
    rows = conn.execute("SELECT count(*) FROM velocity WHERE time_s < ?", (now - keep_s,))
    assert rows.fetchone()[0] <= 1


def test_pruning_drops_old_request_ids() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    store.migrate(conn)
    store.claim_request(conn, "old", "h", 0.0)
    store.claim_request(conn, "new", "h", 500.0)
    assert store.prune(conn, 600.0, requests_keep_s=200, velocity_keep_s=86_400) == (1, 0)
    assert store.lookup_request(conn, "old") is None
    assert store.lookup_request(conn, "new") is not None


def test_a_batch_waits_for_another_process_holding_the_state_lock(tmp_path: Path) -> None:
    """flock is per open file, so a second descriptor here stands in for another worker: while
    it holds the state lock, no batch commits; the moment it lets go, the waiting batch runs
    (no SQLite busy error, no sleep-and-retry)."""
    import os
    import time

    path = tmp_path / "s.sqlite3"
    db = store.StoreThread(path)
    other = os.open(store.lock_path(path), os.O_RDWR)
    try:
        with store.exclusive(other):
            pending = db.submit(lambda conn: store.reserve(conn, "key:k", "a", 5, 1.0))
            time.sleep(0.3)
            assert not pending.done()
        released = time.monotonic()
        pending.result(timeout=5)
        assert time.monotonic() - released < 2.0  # woken by the unlock, not a poll timer
        assert db.call(lambda conn: store.velocity_used(conn, "key:k", "a", 100, 2.0)) == 5
    finally:
        os.close(other)
        db.close()
