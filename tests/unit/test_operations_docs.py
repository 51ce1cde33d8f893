"""docs/operations.md documents every metric the processes define, and the Grafana
dashboard in deploy/ queries only metrics that exist."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import adapters.evm.metrics
import core.metrics
import core.telemetry.rpc
import signer.metrics
from localstack.paths import REPO

MODULES = (core.metrics, adapters.evm.metrics, signer.metrics)
# Each process's RPC metrics live outside the default registry (three copies, one
# contract: tests/unit/test_telemetry_contract.py); the core's stands for all three.
RPC = (core.telemetry.rpc.REQUESTS, core.telemetry.rpc.DURATION)


def defined_metrics() -> set[str]:
    """Names as exposed: counters get _total; histograms are documented by their base name."""
    names = set()
    for family in [*REGISTRY.collect(), *(f for m in RPC for f in m.collect())]:
        if not family.name.startswith("kassa_"):
            continue
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_metric_is_documented_and_every_documented_one_exists() -> None:
    assert all(MODULES)
    text = (REPO / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(kassa_[a-z_]+)", text, re.MULTILINE))
    defined = defined_metrics()
    assert defined, "no kassa_ metrics registered"
    assert defined - documented == set(), "undocumented"
    assert documented - defined == set(), "documented but not defined"


def test_the_dashboard_queries_only_defined_metrics() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "kassa-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|count|sum)$", "", n)
        for e in exprs
        for n in re.findall(r"kassa_[a-z_]+", e)
    }
    defined = defined_metrics()
    bases = {n.removesuffix("_total") for n in defined} | defined
    assert used, "the dashboard has no queries"
    assert used <= bases, used - bases
    covered = {n.removesuffix("_total") for n in defined} - {n.removesuffix("_total") for n in used}
    assert covered == set(), f"metrics without a panel: {covered}"
