"""Reads a process's /metrics as Prometheus would: over HTTP, parsed by prometheus_client."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


def scrape(port: int) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(scrape_text(port)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def wait_for(
    port: int, check: Callable[[Samples], bool], timeout_s: float = 30.0, what: str = ""
) -> Samples:
    deadline = time.monotonic() + timeout_s
    samples = scrape(port)
    while not check(samples):
        if time.monotonic() > deadline:
            raise TimeoutError(f"metrics never showed {what}: {sorted(samples)[:50]}")
        time.sleep(0.25)
        samples = scrape(port)
    return samples
