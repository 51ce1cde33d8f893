"""Process boundaries, enforced on the import graph (what security audits).

The signer imports nothing of core/ or adapters/ and no chain client,
database driver or HTTP client; the adapter and the core do not import each
other or the signer; each process imports only the generated protos of the
services it serves or calls.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from localstack.paths import REPO

RULES = {
    "signer": {
        "core",
        "adapters",
        "localstack",
        "web3",
        "asyncpg",
        "aiohttp",
        "httpx",
        "requests",
        "urllib3",
        "websockets",
        "urllib.request",
        "http.client",
        "kassa.core",
        "kassa.chain",
    },
    # web3 and bip-utils are part of the stack (the EVM client, key and address
    # derivation): only the signer is kept free of web3.
    "adapters": {"core", "signer", "localstack", "asyncpg", "kassa.core", "kassa.signer"},
    "core": {"signer", "adapters", "localstack", "pkcs11"},
}
# The repository's top level is fixed: no package shared between processes lives
# beside them (each owns its telemetry: core/telemetry, signer/telemetry,
# adapters/evm/telemetry, kept in step by tests/unit/test_telemetry_contract.py).
TOP_LEVEL = {
    "protos",
    "core",
    "signer",
    "adapters",
    "gen",
    "tests",
    "scripts",
    "pyproject.toml",
    "README.md",
    "docs",
    "deploy",
    ".ci",
    ".gitignore",
}


def imports_of(package: str) -> list[tuple[Path, int, str]]:
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.lineno, node.module))
                found += [(path, node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def forbidden(name: str, banned: set[str]) -> str | None:
    return next((b for b in banned if name == b or name.startswith(b + ".")), None)


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_stay_inside_its_boundary(package: str) -> None:
    violations = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path, line, name in imports_of(package)
        if forbidden(name, RULES[package])
    ]
    assert not violations, "\n".join(violations)


def test_the_top_level_holds_only_the_fixed_entries() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    assert tracked, "git ls-files listed nothing"
    extra = {path.split("/")[0] for path in tracked} - TOP_LEVEL
    assert extra == set(), f"not allowed at the top level: {sorted(extra)}"


def test_each_process_owns_its_telemetry() -> None:
    for owner in ("core", "signer", "adapters/evm"):
        assert (REPO / owner / "telemetry" / "logs.py").is_file(), owner
        assert (REPO / owner / "telemetry" / "rpc.py").is_file(), owner
    assert not (REPO / "telemetry").exists()


def test_the_rule_catches_a_violation() -> None:
    assert forbidden("asyncpg.pool", RULES["signer"]) == "asyncpg"
    assert forbidden("kassa.signer.v1", RULES["signer"]) is None
    assert forbidden("corex", RULES["signer"]) is None
