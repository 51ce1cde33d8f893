"""The core's layers, enforced on its import graph: every import points down.

  entry points   core.main, core.server, core.ctl   (start, wire, operate)
  the edge       core.api                           (gRPC: parse, authorise, call, render)
  renderers      core.render                        (rows to messages; for the edges only)
  areas          everything else in core/           (deciders, stores, settings)

Nothing below the edge imports it, nothing imports an entry point but an
entry point, renderers are imported only by the edges that send messages,
no area package imports the composed configuration (core/config.py, which
imports theirs), and a pure decider imports neither the edge, the renderers
nor any I/O library. A violation names the file and line, so the fix is where it points.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from localstack.paths import REPO

CORE = REPO / "core"
ENTRY = frozenset({"core.main", "core.server", "core.ctl"})
EDGE = "core.api"
RENDER = "core.render"
# Who may import core.render: the edges that send messages (gRPC answers,
# the event stream and outbox snapshots, webhook bodies).
RENDER_USERS = (
    "core.api",
    "core.render",
    "core.events",
    "core.relay.relay",
    "core.webhooks.worker",
)
# The pure deciders: given values, they return values. No I/O, no gRPC, no messages.
DECIDERS = (
    "core.errors",
    "core.names",
    "core.domain",
    "core.ledger.rules",
    "core.ledger.accounts",
    "core.merchants.credentials",
    "core.webhooks.retry",
    "core.webhooks.signing",
    "core.rates.formats",
    "core.payouts.machine",
    "core.reconcile.decide",
    "core.leadership.decide",
    "core.relay.subjects",
    "core.support.decide",
    "core.payouts.tracking",
    "core.payouts.destinations",
    "core.reasons",
    "core.invoices.state",
    "core.payments.status",
    "core.signer_link.decide",
)
IO = ("asyncpg", "grpc", "grpc_status", "google.rpc", "aiohttp", "kassa")


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, at any depth, TYPE_CHECKING too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                # `from core import names` imports the module core.names.
                full = f"{node.module}.{a.name}"
                found.append((node.lineno, full if is_module(full) else node.module))
    return found


def graph() -> list[tuple[str, int, str]]:
    return sorted(
        {
            (module_of(path), line, name)
            for path in sorted(CORE.rglob("*.py"))
            for line, name in imports(path)
        }
    )


def violation(importer: str, name: str) -> str | None:
    """Why `importer` may not import `name`, or None."""
    if within(name, "core") and name in ENTRY and importer not in ENTRY:
        return "imports an entry point"
    if within(name, EDGE) and not (within(importer, EDGE) or importer in ENTRY):
        return "imports the gRPC edge from below it"
    if within(name, RENDER) and not (
        importer in ENTRY or any(within(importer, u) for u in RENDER_USERS)
    ):
        return "imports a renderer outside the edges"
    if name == "core.config" and importer.count(".") > 1 and not within(importer, EDGE):
        # core/config.py composes every area's settings, so an area package
        # that imported it back would close a cycle; areas take their own
        # settings (e.g. core.chain.config.Chains) instead.
        return "an area imports the composed configuration"
    if any(within(importer, d) for d in DECIDERS):
        if within(name, EDGE) or within(name, RENDER) or name in ENTRY:
            return "a pure decider imports the edge"
        if any(within(name, io) for io in IO):
            return "a pure decider imports an I/O library"
    return None


def test_every_import_in_core_points_down() -> None:
    found = [
        f"core/{'/'.join(importer.split('.')[1:])}.py:{line} imports {name}: {why}"
        for importer, line, name in graph()
        if (why := violation(importer, name)) is not None
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("importer", "name"),
    [
        ("core.invoices.lifecycle", "core.api.render"),  # how lifecycle rendered events before
        ("core.merchants.store", "core.api.auth"),
        ("core.invoices.invoicing", "core.api.validate"),
        ("core.invoices.invoicing", "core.config"),  # the composed configuration
        ("core.ledger.store", "core.server"),
        ("core.ledger.rules", "asyncpg"),
        ("core.ledger.rules", "core.render.ledger"),
        ("core.chain.apply", "core.render.invoices"),
        ("core.invoices.state", "grpc"),
        ("core.payouts.worker", "core.config"),  # the cycle config <-> payouts
    ],
)
def test_the_rules_catch_an_upward_import(importer: str, name: str) -> None:
    assert violation(importer, name) is not None


@pytest.mark.parametrize(
    ("importer", "name"),
    [
        ("core.api.invoice_service", "core.render.invoices"),
        ("core.api.auth", "core.merchants.credentials"),
        ("core.events.snapshots", "core.render.invoices"),
        ("core.server", "core.api.ledger_service"),
        ("core.main", "core.server"),
        ("core.ledger.store", "core.ledger.rules"),
        ("core.merchants.store", "core.errors"),
        ("core.payouts.worker", "core.chain.config"),
        ("core.api.validate", "core.config"),
    ],
)
def test_the_rules_allow_a_downward_import(importer: str, name: str) -> None:
    assert violation(importer, name) is None


def test_the_graph_is_read() -> None:
    """A parser that found nothing would pass the first test vacuously."""
    edges = {(i, n) for i, _, n in graph()}
    assert ("core.server", "core.api.ledger_service") in edges
    assert ("core.api.invoice_service", "core.render.invoices") in edges
    assert ("core.api.ledger_service", "core.ledger.queries") in edges


# The edge parses, authorises, calls and renders: no pool, no SQL. Every area
# hands it a store or reader bound to the pool (core/server.py wires them), and
# core/api/errors.py recognises a database outage through core/store/outage.py,
# so no module of core/api needs the driver (rows pass as core.store.db.Row).
EDGE_MAY_IMPORT_ASYNCPG: frozenset[str] = frozenset()


def driver_imports(edges: list[tuple[str, int, str]]) -> list[str]:
    """Each import of asyncpg by a module of the edge, outside the allowed ones."""
    return [
        f"core/{'/'.join(importer.split('.')[1:])}.py:{line} imports {name}"
        for importer, line, name in edges
        if within(importer, EDGE)
        and within(name, "asyncpg")
        and importer not in EDGE_MAY_IMPORT_ASYNCPG
    ]


def test_the_edge_imports_no_database_driver() -> None:
    found = driver_imports(graph())
    assert not found, "\n".join(found)


def test_the_driver_rule_catches_an_edge_import() -> None:
    assert driver_imports([("core.api.auth", 16, "asyncpg")]) == [
        "core/api/auth.py:16 imports asyncpg"
    ]
    assert driver_imports([("core.api.ledger_service", 9, "asyncpg.exceptions")])
    assert not driver_imports([("core.merchants.store", 5, "asyncpg")])
    # and the graph does hold asyncpg imports, below the edge
    assert ("core.store.db", "asyncpg") in {(i, n) for i, _, n in graph()}


def test_the_edge_acquires_no_connection() -> None:
    """Holding a store object is not enough if a handler reaches through it
    for its pool (as `self.actions.pool.acquire()` once did)."""
    found = [
        f"{path.relative_to(REPO)}:{n}: {text.strip()}"
        for path in sorted((CORE / "api").rglob("*.py"))
        for n, text in enumerate(path.read_text().splitlines(), 1)
        if ".acquire(" in text or ".transaction(" in text or "asyncpg.Pool" in text
    ]
    assert not found, "\n".join(found)


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in tests/support; conftest.py files hold fixtures."""
    found = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        for line, name in imports(path)
        if within(name, "tests") and not within(name, "tests.support")
    ]
    assert not found, "\n".join(found)
