"""scripts/stack up leaves a working stack running after it returns; status sees it;
down stops every process it started and changes nothing git sees, and no permission of
any directory above the run directory changed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clients import ApiTls, authed_channel
from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
from localstack.paths import REPO
from localstack.session import _alive


def _session(run_dir: Path, command: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    """`scripts/stack COMMAND` itself (script: its setup step too), else its module."""
    runner = (
        [str(REPO / "scripts" / "stack")]
        if script
        else [sys.executable, "-m", "localstack.session"]
    )
    return subprocess.run(
        [*runner, command, "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def _ancestor_modes(run_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mode for p in run_dir.parents}


@pytest.fixture
def own_run_dir() -> Iterator[Path]:
    # Directly under /tmp, whose parents anyone may traverse: the stack opens its own run
    # directory to the postgres user and nothing above it (pytest's tmp root is 0700).
    path = Path(tempfile.mkdtemp(prefix="kassa-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_status_down(own_run_dir: Path) -> None:
    run_dir = own_run_dir
    tracked_before = _git_status()
    modes_before = _ancestor_modes(run_dir)
    started = _session(run_dir, "up", script=True)
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
        stopped = _session(run_dir, "down", script=True)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(_alive(pid) for pid in state["pids"].values())
    assert not (Path(state["postgres_data"]) / "postmaster.pid").exists()
    assert _session(run_dir, "status").returncode == 3
    assert _git_status() == tracked_before
    assert _ancestor_modes(run_dir) == modes_before
