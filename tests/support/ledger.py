"""`kassactl ledger check` on a database, as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

KASSACTL = str(Path(sys.executable).parent / "kassactl")


def ledger_check(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KASSACTL, "ledger", "check", "--dsn", dsn], capture_output=True, text=True, timeout=120
    )
