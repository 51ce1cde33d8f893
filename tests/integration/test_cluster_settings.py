"""A benchmark sizes its private cluster with `PostgresCluster(settings=...)`:
the settings reach the server and override the defaults; a malformed one is
refused when the cluster is made, before anything starts (they end up on pg_ctl's command line)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from localstack.postgres import PostgresCluster


async def test_settings_reach_the_server_and_override_the_defaults(run_dir: Path) -> None:
    # Under the session's run directory, which the service user can reach.
    cluster = PostgresCluster(
        run_dir / "sized-postgres", settings=("shared_buffers=48MB", "wal_buffers=4MB")
    )
    dsn = cluster.start()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SHOW shared_buffers") == "48MB"
            assert await conn.fetchval("SHOW wal_buffers") == "4MB"
        finally:
            await conn.close()
    finally:
        cluster.destroy()


@pytest.mark.parametrize("setting", ["shared_buffers", "a=1 -c b=2", "x=1;touch /tmp/y", "x=1\n"])
def test_a_malformed_setting_is_refused_before_anything_starts(
    tmp_path: Path, setting: str
) -> None:
    with pytest.raises(AssertionError):
        PostgresCluster(tmp_path / "pg", settings=(setting,))
    assert not (tmp_path / "pg").exists()
