"""A private PostgreSQL cluster in a directory of its own.

initdb and the server refuse to run as root, and CI runs as root: then the
cluster belongs to an unprivileged system user and every server command runs
as that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localstack.paths import postgres_bin
from localstack.ports import free_port

SERVICE_USER = "kassa-pg"


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
        )
        return pwd.getpwnam(SERVICE_USER)


class UnreachableRunDir(RuntimeError):
    pass


def _make_traversable(path: Path, run_dir: Path) -> None:
    """Lets the service user reach `path` (it only needs +x on each directory above it).

    Only directories inside `run_dir` (and run_dir itself), which this stack owns, are
    changed; a directory above it that others cannot traverse is reported, never
    chmod-ed (a developer's home, pytest's 0700 tmp root: not ours to open)."""
    assert path == run_dir or run_dir in path.parents, (path, run_dir)
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o001:
            continue
        if directory == run_dir or run_dir in directory.parents:
            os.chmod(directory, mode | 0o001)
        else:
            raise UnreachableRunDir(
                f"{directory} is not traversable by others (mode {mode & 0o777:o}), so the "
                f"PostgreSQL service user {SERVICE_USER!r} cannot reach {path}; use a run "
                "directory under a path others can traverse (the repository's .run/, /tmp)"
            )


@dataclass
class PostgresCluster:
    base_dir: Path
    port: int = 0
    database: str = "kassa"
    user: str = "kassa"
    # The run directory this cluster lives in: permissions are changed only inside it
    # (default: base_dir's parent, the directory its caller gave it).
    run_dir: Path | None = None
    # More server settings, each "name=value" (a benchmark sizing the cluster
    # for its working set); they follow, so override, the defaults below.
    settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).resolve()
        self.run_dir = Path(self.run_dir or self.base_dir.parent).resolve()
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "postgres.log"
        if not self.port:
            self.port = free_port()
        for setting in self.settings:
            # They end up on pg_ctl's command line: one plain name=value each.
            assert re.fullmatch(r"[a-z_]+=[A-Za-z0-9_.]+", setting), setting

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            args = ["runuser", "-u", SERVICE_USER, "--", *args]
        return subprocess.run(args, check=check, capture_output=True, text=True)

    def start(self) -> str:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = _ensure_service_user()
            assert self.run_dir is not None
            _make_traversable(self.base_dir, self.run_dir)
            os.chown(self.base_dir, account.pw_uid, account.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                [
                    str(postgres_bin("initdb")),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.data_dir} -c max_connections=200 "
            "-c shared_buffers=256MB -c log_min_messages=warning"
        )
        for setting in self.settings:
            options += f" -c {setting}"
        result = self._run(
            [
                str(postgres_bin("pg_ctl")),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=False,
        )
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{log[-2000:]}")
        created = self._run(
            [
                str(postgres_bin("createdb")),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                self.database,
            ],
            check=False,
        )
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise RuntimeError(f"createdb failed: {created.stderr}")
        return self.dsn

    def create_database(self, name: str) -> str:
        self._run(
            [
                str(postgres_bin("createdb")),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                name,
            ]
        )
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def create_password_database(self, name: str, user: str, password: str) -> str:
        """A database owned by `user`, who must log in with `password` (scram-sha-256) —
        unlike the cluster's own user, trusted on loopback. Returns its DSN without the
        password, which the caller keeps in a file."""
        hba = self.data_dir / "pg_hba.conf"
        rule = f"host all {user} 127.0.0.1/32 scram-sha-256\n"
        text = hba.read_text()
        if rule not in text:
            # pg_hba is first match: the rule goes above the cluster's trust lines.
            hba.write_text(rule + text)
        escaped = password.replace("'", "''")
        for sql in (
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') "
            f"THEN CREATE ROLE {user} LOGIN; END IF; END $$",
            f"ALTER ROLE {user} PASSWORD '{escaped}'",
            f"CREATE DATABASE {name} OWNER {user}",
            "SELECT pg_reload_conf()",
        ):
            self._run(
                [
                    str(postgres_bin("psql")),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-d",
                    self.database,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ]
            )
        return f"postgresql://{user}@127.0.0.1:{self.port}/{name}"

    def dump(self, database: str) -> str:
        """pg_dump of a database as SQL text: what a stolen backup holds."""
        return self._run(
            [
                str(postgres_bin("pg_dump")),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                database,
            ]
        ).stdout

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run(
                [
                    str(postgres_bin("pg_ctl")),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                check=False,
            )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
