"""scripts/stack up leaves a working stack running after it returns; status sees it;
down stops every process it started and changes nothing tracked by git."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.clients import ApiTls, authed_channel
from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
from localstack.paths import REPO
from localstack.session import _alive


def _session(run_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localstack.session", command, "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_up_status_down(run_dir: Path) -> None:
    # Under the session's run directory, which the postgres user can traverse (pytest
    # resets its own tmp root to 0700 whenever another pytest session starts).
    run_dir = run_dir / "stack-session"
    tracked_before = _git_status()
    started = _session(run_dir, "up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((run_dir / "state.json").read_text())
        assert state["api_key"] in started.stdout and state["ca_file"] in started.stdout
        assert Path(state["ca_file"]).is_file()
        assert all(_alive(pid) for pid in state["pids"].values())
        # The stack outlives the command that started it: a developer's service calls it.
        tls = ApiTls.from_files(Path(state["ca_file"]))
        with authed_channel(state["core"], state["api_key"], tls) as channel:
            invoice = (
                invoice_pb2_grpc.InvoiceServiceStub(channel)
                .CreateInvoice(
                    invoice_pb2.CreateInvoiceRequest(
                        parent=state["merchant"],
                        merchant_order_id="from-my-service",
                        asset=state["asset"],
                        price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
                    )
                )
                .invoice
            )
        assert invoice.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT
        status = _session(run_dir, "status")
        assert status.returncode == 0, status.stdout
        assert "core health  SERVING" in status.stdout
        again = _session(run_dir, "up")  # idempotent: prints the same endpoints
        assert again.returncode == 0 and state["api_key"] in again.stdout
    finally:
        stopped = _session(run_dir, "down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(_alive(pid) for pid in state["pids"].values())
    assert not (Path(state["postgres_data"]) / "postmaster.pid").exists()
    assert _session(run_dir, "status").returncode == 3
    assert _git_status() == tracked_before
