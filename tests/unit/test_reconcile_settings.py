"""[reconcile] configuration and the migration numbering it relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.reconcile.settings import ReconcileSettings, parse
from core.store.migrate import MigrationError, load_migrations


def test_defaults_to_on_demand_only() -> None:
    assert parse({}) == ReconcileSettings(0.0)
    assert parse({"interval_s": 3600}).interval_s == 3600.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"interval_s": -1}, "non-negative"),
        ({"interval_s": True}, "non-negative"),
        ({"interval_s": "60"}, "non-negative"),
        ({"interval": 60}, "unknown keys"),
    ],
)
def test_bad_settings_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(raw)


def test_migration_numbers_may_leave_gaps_but_not_repeat(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0012_b.sql").write_text("SELECT 2;")
    assert [m.version for m in load_migrations(tmp_path)] == [1, 12]
    (tmp_path / "0012_c.sql").write_text("SELECT 3;")
    with pytest.raises(MigrationError, match="uniquely"):
        load_migrations(tmp_path)


def test_migrations_must_start_at_one(tmp_path: Path) -> None:
    (tmp_path / "0002_a.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError):
        load_migrations(tmp_path)


def test_the_shipped_migrations_load() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions[0] == 1 and 12 in versions and versions == sorted(set(versions))
