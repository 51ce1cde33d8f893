"""Secret files of the adapter (its TLS key, node URLs carrying provider API keys):
refused when group or others may read them, naming the file and the fix."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretFileError(ValueError):
    """The message names the file and the fix, never its content."""


def read_secret_file(path: Path, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SecretFileError(f"{what}: cannot read {path}: {exc.strerror}") from None
    # fstat of the descriptor we read from: no window between the check and the read.
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise SecretFileError(
                f"{what}: {path} is readable by group or others (mode {mode:04o}); "
                f"a secret file must be private to its owner: chmod 600 {path}"
            )
        return f.read()
