"""The core's health tells the truth about its database: a PostgreSQL cluster
of this test's own is stopped under a running core and started again.

Without an adapter the chain is not followed, so "" and the chain's entry say
NOT_SERVING throughout; the services say what the database allows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localstack.postgres import PostgresCluster
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup
from tests.support.metrics import scrape, value

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
INVOICES = "kassa.core.v1.InvoiceService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def cluster(run_dir: Path) -> Iterator[PostgresCluster]:
    # Under the session's run directory (like the shared cluster), not pytest's tmp tree,
    # which other pytest sessions on the machine prune.
    own = PostgresCluster(run_dir / "own-postgres")
    own.start()
    yield own
    own.destroy()


def status(core: CoreSetup, service: str) -> int:
    with core.bare_channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


def wait_status(core: CoreSetup, service: str, wanted: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    got = status(core, service)
    while got != wanted:
        assert time.monotonic() < deadline, f"{service!r} stayed {got}, wanted {wanted}"
        time.sleep(0.2)
        got = status(core, service)


def test_health_flips_with_the_database_and_back(cluster: PostgresCluster, tmp_path: Path) -> None:
    core = CoreSetup(
        run_dir=tmp_path,
        dsn=cluster.dsn,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        health={"interval_s": 0.2},
        # Heartbeats every 0.5 s: the outage below spans several elector retries.
        leadership={"lease_s": 1.5},
    )
    process: ManagedProcess = core.process().start()
    try:
        wait_status(core, INVOICES, SERVING)
        assert status(core, "") == NOT_SERVING  # no adapter: the chain is not followed
        assert status(core, "kassa.chain/eip155:31337") == NOT_SERVING
        assert value(scrape(core.metrics_port), "kassa_core_database_up") in (0, 1)

        cluster.stop()
        wait_status(core, INVOICES, NOT_SERVING)
        assert status(core, "") == NOT_SERVING
        deadline = time.monotonic() + 10
        while value(scrape(core.metrics_port), "kassa_core_database_up") != 0:
            assert time.monotonic() < deadline, "database_up stayed 1 with PostgreSQL stopped"
            time.sleep(0.2)
        time.sleep(2.5)  # several reconnect attempts of every elector

        cluster.start()
        wait_status(core, INVOICES, SERVING)
        assert process.running
    finally:
        if not (cluster.data_dir / "postmaster.pid").exists():
            cluster.start()
        code = process.stop()
    assert code == 0, "core did not stop cleanly"
    lines = (tmp_path / "core.log").read_text().splitlines()
    # One line per change of the health verdict (its own message: the leadership
    # electors say theirs once per outage too, never once per retry).
    assert sum("database unreachable: reporting NOT_SERVING" in line for line in lines) == 1
    assert sum('"database reachable"' in line for line in lines) == 2
    gone = [
        json.loads(line)["role"] for line in lines if "leadership: database unreachable" in line
    ]
    assert len(gone) == len(set(gone)), gone  # one outage: at most one line per role
