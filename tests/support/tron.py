"""tronweb (npm, installed by scripts/setup) as the independent reader of TRON transactions the
signer produced: run offline in a node process, it reports what the bytes say."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from localstack.paths import REPO

SCRIPT = REPO / "tests" / "support" / "tronweb_verify.cjs"
NODE_MODULES = REPO / "scripts" / "npm" / "node_modules"


def _node(request: object) -> Any:
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def tronweb_read(signed_transactions: list[bytes]) -> list[dict[str, Any]]:
    """For each serialized signed Transaction: txid, recovered signer addresses, contract."""
    result: list[dict[str, Any]] = _node([tx.hex() for tx in signed_transactions])
    return result


def tronweb_addresses(private_keys: list[bytes]) -> list[str]:
    """tronweb's base58 address of each secp256k1 private key."""
    result: list[str] = _node({"private_keys": [k.hex() for k in private_keys]})
    return result
