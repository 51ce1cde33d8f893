"""The local stack changes permissions only inside its own run directory: the PostgreSQL
service user gets +x on the directories the stack owns, and a directory above the run
directory that others cannot traverse is reported, never opened up (scripts/demo used to
make every parent of its run directory world-traversable)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localstack.postgres import UnreachableRunDir, _make_traversable


@pytest.fixture
def base() -> Iterator[Path]:
    # Under /tmp (sticky, traversable), not pytest's 0700 tmp root.
    path = Path(tempfile.mkdtemp(prefix="kassa-perm-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_directories_inside_the_run_directory_get_traversable(base: Path) -> None:
    cluster = base / "stack" / "postgres"
    cluster.mkdir(parents=True, mode=0o700)
    (base / "stack").chmod(0o700)
    assert _mode(base) == 0o700
    _make_traversable(cluster, base)
    for directory in (base, base / "stack", cluster):
        assert _mode(directory) == 0o701, directory


def test_a_closed_directory_above_the_run_directory_is_reported_not_opened(base: Path) -> None:
    run_dir = base / "run"
    cluster = run_dir / "postgres"
    cluster.mkdir(parents=True)
    cluster.chmod(0o700)
    assert _mode(base) == 0o700  # above the run directory: not the stack's
    with pytest.raises(UnreachableRunDir, match="not traversable by others"):
        _make_traversable(cluster, run_dir)
    assert _mode(base) == 0o700


def test_the_path_must_be_inside_the_run_directory(base: Path) -> None:
    with pytest.raises(AssertionError):
        _make_traversable(base, base / "elsewhere")
