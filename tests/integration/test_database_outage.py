"""A database that goes away under a running core (pg_ctl stop on a private
cluster this test owns): callers get UNAVAILABLE with RetryInfo, never
UNKNOWN; health says NOT_SERVING while the database is away and SERVING again
once it is back; the core recovers when the database comes back; SIGTERM, with
the database up or down, stops it with exit 0 and "core stopped" logged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
from kassa.ledger.v1 import ledger_pb2 as lpb
from kassa.ledger.v1 import ledger_pb2_grpc as lpb_grpc
from localstack.postgres import PostgresCluster
from localstack.stack import CoreSetup
from tests.support.config import XPUB

TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"


@pytest.fixture
def cluster(run_dir: Path) -> Iterator[PostgresCluster]:
    # Under the session's run directory, which the postgres user can traverse.
    own = PostgresCluster(run_dir / "outage-postgres")
    own.start()
    yield own
    own.stop()


def _retry_delay_s(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    raise AssertionError("no RetryInfo")


LEDGER = lpb.DESCRIPTOR.services_by_name["LedgerService"].full_name


def _health_becomes(health: health_pb2_grpc.HealthStub, service: str, status: int) -> None:
    """Within a few health intervals (the core looks every 0.2 s here)."""
    deadline = time.monotonic() + 15
    while True:
        seen = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        if seen == status:
            return
        assert time.monotonic() < deadline, f"health of {service!r} stayed {seen}, not {status}"
        time.sleep(0.1)


def _transfer(n: int) -> lpb.CreateTransfersRequest:
    return lpb.CreateTransfersRequest(
        transfers=[
            lpb.Transfer(
                id=f"t{n}",
                debit_account_id="a",
                credit_account_id="b",
                amount="1",
                asset=TOKEN,
                code=1,
            )
        ]
    )


def test_outage_is_unavailable_then_recovers_and_sigterm_exits_0(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    setup = CoreSetup(
        run_dir=tmp_path / "core",
        dsn=cluster.create_database("outage"),
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        health={"interval_s": 0.2},
    )
    process = setup.process().start()
    with setup.channel(setup.admin_token()) as channel:
        ledger = lpb_grpc.LedgerServiceStub(channel)
        invoices = invoice_pb2_grpc.InvoiceServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        accounts = [lpb.Account(id=i, asset=TOKEN, code=1) for i in ("a", "b")]
        ledger.CreateAccounts(lpb.CreateAccountsRequest(accounts=accounts))
        assert ledger.CreateTransfers(_transfer(0)).results[0].reason == ""
        _health_becomes(health, LEDGER, health_pb2.HealthCheckResponse.SERVING)

        cluster.stop()
        time.sleep(0.5)  # past the key cache: authentication needs the database too
        calls = [
            lambda: ledger.GetAccount(lpb.GetAccountRequest(id="a"), timeout=30),
            lambda: ledger.CreateTransfers(_transfer(1), timeout=30),
            lambda: invoices.ListInvoices(
                invoice_pb2.ListInvoicesRequest(parent="merchants/-"), timeout=30
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            error = caught.value
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error  # type: ignore[attr-defined]
            assert _retry_delay_s(error) > 0
            details = error.details() or ""  # type: ignore[attr-defined]
            assert str(cluster.port) not in details and "asyncpg" not in details
        # The health service answers without the database, and tells the truth.
        for service in (LEDGER, ""):
            _health_becomes(health, service, health_pb2.HealthCheckResponse.NOT_SERVING)

        cluster.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                result = ledger.CreateTransfers(_transfer(2), timeout=10).results[0]
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # type: ignore[attr-defined]
                assert time.monotonic() < deadline, "the core did not recover"
                time.sleep(0.5)
        assert result.reason == ""
        assert ledger.GetAccount(lpb.GetAccountRequest(id="b")).account.credits_posted == "2"
        _health_becomes(health, LEDGER, health_pb2.HealthCheckResponse.SERVING)

        # Down again, and stopped while it is down: still a clean exit.
        cluster.stop()
        time.sleep(1.0)  # the background loops meet the outage
    assert process.stop() == 0, "core did not exit 0 on SIGTERM after an outage"
    log = (tmp_path / "core" / "core.log").read_text(errors="replace")
    assert "core stopped" in log
    assert "Task was destroyed" not in log
