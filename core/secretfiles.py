"""Secrets come from files or the environment, never from the config file itself.

A config file may then be world-readable; a secret file may not: one that
group or others can read is refused with a message saying how to fix it,
before anything starts. The secret's value never appears in an error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path


class SecretError(ValueError):
    """A secret cannot be used; the message names where it was looked for, never its value."""


def read_secret_file(path: Path, what: str) -> bytes:
    """The bytes of a secret file owned by nobody but its owner (mode 0600 or 0400)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SecretError(f"{what}: cannot read {path}: {exc.strerror}") from None
    # fstat of the descriptor we read from: no window between the check and the read.
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise SecretError(
                f"{what}: {path} is readable by group or others (mode {mode:04o}); "
                f"a secret file must be private to its owner: chmod 600 {path}"
            )
        return f.read()


def read_secret_text(path: Path, what: str) -> str:
    """A secret file's text without the trailing newline editors add."""
    try:
        return read_secret_file(path, what).decode().strip()
    except UnicodeDecodeError:
        raise SecretError(f"{what}: {path} is not UTF-8 text") from None


def secret_from(
    table: Mapping[str, object],
    key: str,
    where: str,
    base: Path,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """`<key>_file` (a path, relative to the config file) or `<key>_env` (the name of an
    environment variable), at most one of them; None when neither is given."""
    environ = os.environ if environ is None else environ
    file_key, env_key = f"{key}_file", f"{key}_env"
    if file_key in table and env_key in table:
        raise SecretError(f"{where}.{file_key} and {where}.{env_key}: give one of them")
    if file_key in table:
        value = table[file_key]
        if not isinstance(value, str) or not value:
            raise SecretError(f"{where}.{file_key} must be a path")
        return read_secret_text(base / value, f"{where}.{file_key}")
    if env_key in table:
        name = table[env_key]
        if not isinstance(name, str) or not name:
            raise SecretError(f"{where}.{env_key} must name an environment variable")
        found = environ.get(name)
        if not found:
            raise SecretError(f"{where}.{env_key}: the environment variable {name} is not set")
        return found.strip()
    return None
