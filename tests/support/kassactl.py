"""kassactl as an operator runs it, from the tests: the one way they invoke it."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from localstack.procs import console_script
from localstack.stack import CoreSetup


def kassactl(
    *args: str, timeout_s: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `kassactl ARGS`, its output captured as text; the exit code is the caller's to judge."""
    return subprocess.run(
        [console_script("kassactl"), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=None if env is None else dict(env),
    )


def against(
    core: CoreSetup,
    *args: str,
    token: str | None = None,
    timeout_s: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`kassactl` talking to a running core over TLS (its CA), with `--token` if given."""
    auth = ["--token", token] if token is not None else []
    return kassactl(
        "--target",
        core.target,
        "--ca-file",
        str(core.ca_file),
        *auth,
        *args,
        timeout_s=timeout_s,
        env=env,
    )


def bootstrap_key(dsn: str, scopes: str) -> str:
    """A platform API key with `scopes` (comma-separated), straight from the database."""
    result = kassactl("bootstrap-key", "--dsn", dsn, "--scopes", scopes)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def ledger_check(dsn: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """`kassactl ledger check` on a database."""
    return kassactl("ledger", "check", "--dsn", dsn, timeout_s=timeout_s)
