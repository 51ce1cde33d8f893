"""scripts/stack up|down|status: the local stack kept running for a developer's own service.

`up` starts PostgreSQL, SoftHSM2, anvil (a block a second), the signer, the
EVM adapter and the core under .run/stack, creates a merchant and its API
key, prints the endpoints, and returns with everything left running; the
state (pids, endpoints) is in .run/stack/state.json. `status` says what is
alive and the core's health; `down` stops it all (SIGTERM, core first) and
keeps the logs. Everything it writes is under its run directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.clients import ApiTls, api_channel
from localstack.demo import clean_previous_run
from localstack.fullstack import LocalStack
from localstack.paths import REPO, postgres_bin
from localstack.postgres import SERVICE_USER

DEFAULT_RUN_DIR = REPO / ".run" / "stack"
MERCHANT = "dev"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _state_file(run_dir: Path) -> Path:
    return run_dir / "state.json"


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    path = _state_file(run_dir)
    return json.loads(path.read_text()) if path.exists() else None


def _core_health(target: str, ca_file: str) -> str:
    try:
        with api_channel(target, ApiTls.from_files(Path(ca_file))) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError as exc:
        return f"unreachable ({exc.code().name})"


def _print_endpoints(state: dict[str, Any]) -> None:
    print(
        f"""Kassa local stack is up (run directory {state["run_dir"]}).

  core gRPC (TLS)                  {state["core"]}
  merchant                         {state["merchant"]}
  merchant API key                 {state["api_key"]}
  signer gRPC (mTLS)               {state["signer"]}
  CA file (core and signer TLS)    {state["ca_file"]}
  EVM adapters                     {", ".join(state["adapters"])}
  anvil JSON-RPC                   {", ".join(state["anvil"])}
  metrics (GET /metrics)           {", ".join(f"{k} {v}" for k, v in state["metrics"].items())}
  PostgreSQL                       {state["dsn"]}
  logs                             {state["run_dir"]}/*.log

Create an invoice from Python (pip install grpcio and the generated stubs in gen/):

  import grpc
  from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
  ca = open("{state["ca_file"]}", "rb").read()
  channel = grpc.secure_channel("{state["core"]}", grpc.ssl_channel_credentials(ca))
  stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
  print(stub.CreateInvoice(invoice_pb2.CreateInvoiceRequest(
      parent="{state["merchant"]}", merchant_order_id="order-1", asset="{state["asset"]}",
      price=invoice_pb2.FiatAmount(amount="25.00", currency="USD")),
      metadata=[("authorization", "Bearer {state["api_key"]}")]))

Stop it with: scripts/stack down"""
    )


def up(run_dir: Path) -> int:
    state = _read_state(run_dir)
    if state is not None and all(_alive(pid) for pid in state["pids"].values()):
        _print_endpoints(state)
        return 0
    clean_previous_run(run_dir)
    stack = LocalStack(run_dir, block_time_s=1.0)
    try:
        stack.start_all()
        core = stack.core_setup()
        token = core.merchant_token(MERCHANT)
    except BaseException:
        stack.stop()
        raise
    pids = {name: p.pid for name, p in stack.processes.items()}
    for chain in stack.chains:
        assert chain.anvil.process is not None
        pids[f"anvil-{chain.chain_id}"] = chain.anvil.process.pid
    assert stack.postgres is not None
    state = {
        "run_dir": str(run_dir),
        "core": core.target,
        "merchant": f"merchants/{MERCHANT}",
        "api_key": token,
        "asset": stack.token_asset,
        "signer": f"localhost:{stack.signer_port}",
        "ca_file": str(core.ca_file),
        "adapters": [f"127.0.0.1:{c.adapter_port}" for c in stack.chains],
        "anvil": [c.anvil.http_url for c in stack.chains],
        "metrics": {
            "core": f"127.0.0.1:{core.metrics_port}",
            **{name: f"127.0.0.1:{port}" for name, port in stack.metrics_ports.items()},
        },
        "dsn": stack.dsn,
        "postgres_data": str(stack.postgres.data_dir),
        "pids": pids,
    }
    _state_file(run_dir).write_text(json.dumps(state, indent=2) + "\n")
    _print_endpoints(state)
    return 0


def status(run_dir: Path) -> int:
    state = _read_state(run_dir)
    if state is None:
        print("the local stack is not up (scripts/stack up)")
        return 3
    alive = {name: _alive(pid) for name, pid in state["pids"].items()}
    for name, ok in alive.items():
        print(f"{name:12} {'running' if ok else 'STOPPED'} (pid {state['pids'][name]})")
    print(f"core health  {_core_health(state['core'], state['ca_file'])}")
    return 0 if all(alive.values()) else 1


def _stop_pid(pid: int, group: bool, timeout_s: float = 15.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)


def down(run_dir: Path) -> int:
    state = _read_state(run_dir)
    if state is None:
        print("the local stack is not up")
        return 0
    pids: dict[str, int] = state["pids"]
    order = ["core", *sorted(n for n in pids if n.startswith("evm-")), "signer"]
    order += sorted(n for n in pids if n not in order)
    for name in order:
        # Kassa's processes lead their own session (procs.ManagedProcess); anvil does not.
        _stop_pid(pids[name], group=not name.startswith("anvil-"))
    data = Path(state["postgres_data"])
    if (data / "postmaster.pid").exists():
        runner = ["runuser", "-u", SERVICE_USER, "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*runner, str(postgres_bin("pg_ctl")), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            check=False,
        )
    _state_file(run_dir).unlink()
    print(f"the local stack is down (logs kept in {run_dir})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    if args.command == "up":
        return up(run_dir)
    if args.command == "down":
        return down(run_dir)
    return status(run_dir)


if __name__ == "__main__":
    sys.exit(main())
