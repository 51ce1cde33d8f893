"""Where the tools the setup script installs live."""

from __future__ import annotations

import glob
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NPM_BIN = REPO / "scripts" / "npm" / "node_modules" / ".bin"
ANVIL = (
    REPO
    / "scripts"
    / "npm"
    / "node_modules"
    / "@foundry-rs"
    / "anvil-linux-amd64"
    / "bin"
    / "anvil"
)
SOLCJS = NPM_BIN / "solcjs"
BUF = NPM_BIN / "buf"
SOFTHSM2_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
OPENCRYPTOKI_MODULE = Path("/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0")


def postgres_bin(name: str) -> Path:
    """The newest installed PostgreSQL's binary `name` (initdb, pg_ctl, ...)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed; run scripts/setup")
    return Path(found[-1])
