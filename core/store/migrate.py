"""Numbered SQL migrations, applied in order, each once, each atomically.

A migration's checksum is recorded; an applied file that has since changed is
refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
# Serialises concurrent migrators (two cores starting at once).
_LOCK_KEY = 0x6B61_7373_61


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if not match:
            raise MigrationError(f"migration file name not NNNN_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    # Numbers are unique and start at 1; a gap is allowed because work on
    # parallel branches reserves numbers (0009-0011) that land in any order.
    # Each migration is still applied once, in number order of what is pending.
    if not versions or versions[0] != 1 or len(set(versions)) != len(versions):
        raise MigrationError(f"migrations must be numbered uniquely from 1, got {versions}")
    return found


@dataclass(frozen=True)
class SchemaStatus:
    """What the database has applied against what this binary knows."""

    applied: dict[int, str]  # version -> checksum, as recorded in the database
    known: tuple[Migration, ...]

    @property
    def pending(self) -> list[str]:
        return [m.name for m in self.known if m.version not in self.applied]

    @property
    def newer(self) -> list[int]:
        """Versions the database has that this binary does not know (it is older)."""
        known = {m.version for m in self.known}
        return sorted(v for v in self.applied if v not in known)

    @property
    def changed(self) -> list[str]:
        return [
            m.name
            for m in self.known
            if m.version in self.applied and self.applied[m.version] != m.checksum
        ]


def refusal_to_serve(status: SchemaStatus) -> str | None:
    """Why a core must not serve on this schema (None: it may). Pure."""
    if status.newer:
        return (
            f"the database schema is at version {max(status.newer)}, newer than this "
            f"kassa-core knows ({len(status.known)}): run the newer release, or restore "
            "the database backup taken before the upgrade"
        )
    if status.changed:
        return f"{status.changed[0]} changed after it was applied (checksum differs)"
    if status.pending:
        return (
            f"{len(status.pending)} pending migration(s) ({status.pending[0]}...): "
            "run `kassa-core --config FILE migrate` first, or serve with --migrate"
        )
    return None


async def schema_status(dsn: str) -> SchemaStatus:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations") if exists else []
    finally:
        await conn.close()
    return SchemaStatus({r["version"]: r["checksum"] for r in rows}, tuple(load_migrations()))


async def migrate(dsn: str) -> list[str]:
    """Applies pending migrations; returns the names applied now."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL,
                   checksum text NOT NULL, applied_time timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r
            for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        known = {m.version for m in load_migrations()}
        newer = sorted(v for v in done if v not in known)
        if newer:
            raise MigrationError(
                f"the database schema is at version {max(newer)}, newer than this kassa-core "
                f"knows ({len(known)}): refusing to migrate it"
            )
        for migration in load_migrations():
            row = done.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{migration.name} changed after it was applied (checksum differs)"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.name)
    finally:
        await conn.close()
    return applied_now
