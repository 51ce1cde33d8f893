"""Process boundaries, enforced on the import graph (what security audits).

The signer imports nothing of core/ or adapters/ and no chain client,
database driver or HTTP client; the adapter and the core do not import each
other or the signer; each process imports only the generated protos of the
services it serves or calls.
"""

from __future__ import annotations

import ast
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
    # Shared by all three, the signer included: the signer's rules and no process's code.
    "telemetry": {
        "core",
        "signer",
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
    },
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


def test_the_rule_catches_a_violation() -> None:
    assert forbidden("asyncpg.pool", RULES["signer"]) == "asyncpg"
    assert forbidden("kassa.signer.v1", RULES["signer"]) is None
    assert forbidden("corex", RULES["signer"]) is None
