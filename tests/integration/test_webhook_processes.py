"""Webhook delivery processes ([webhooks] delivery_processes) against a real
core process, PostgreSQL and a local HTTP receiver.

Deliveries sent by several processes arrive exactly once; a process killed
mid-delivery is restarted by the core and its delivery leased back and sent;
their attempts count on the core's /metrics; stopping or killing the core
leaves no process behind and no delivery stuck; a process that hangs
(SIGSTOP) is killed and restarted; a process that cannot reach the database
says so, and never logs a secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.webhooks import fleet
from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc, webhook_pb2, webhook_pb2_grpc
from localstack.paths import REPO
from localstack.ports import free_port
from localstack.postgres import PostgresCluster
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup
from tests.support import metrics
from tests.support.config import XPUB
from tests.support.waiting import db, wait_until

TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
SCOPES = ("invoices:read", "invoices:write", "webhooks:read", "webhooks:write")
TIMEOUT_S = 3.0
WEBHOOKS = {
    "initial_backoff_s": 0.05,
    "max_backoff_s": 0.2,
    "give_up_after_s": 120,
    "timeout_s": TIMEOUT_S,
    "poll_interval_s": 0.05,
    "lease_grace_s": 0.5,
    "allow_private_targets": True,
    "concurrency": 4,
    "endpoint_concurrency": 4,
    "delivery_processes": 2,
}


@dataclass
class Receiver:
    """Answers 200; while `held` is set, holds each request until released."""

    port: int = field(default_factory=free_port)
    event_ids: list[str] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    # Each answer's delay: one process cannot drain a burst alone.
    delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.event_ids.append(self.headers["Kassa-Event-Id"])
                receiver.arrived.set()
                time.sleep(receiver.delay_s)
                if receiver.held.is_set():
                    receiver.release.wait(30)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed mid-delivery)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def got(self) -> list[str]:
        with self._lock:
            return list(self.event_ids)


def delivery_pids(core_pid: int) -> list[int]:
    """The live delivery processes the core started (its children by /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == core_pid and stat[0] != "Z" and b"core.delivery_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


def make_core(run_dir: Path, dsn: str, **webhooks: object) -> CoreSetup:
    return CoreSetup(
        run_dir=run_dir,
        dsn=dsn,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        health={"invoices_need_chain": False},
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        webhooks={**WEBHOOKS, **webhooks},
    )


@dataclass
class Running:
    setup: CoreSetup
    process: ManagedProcess
    receiver: Receiver
    merchant: str
    token: str

    def invoices(self, n: int, prefix: str) -> None:
        with self.setup.channel(self.token) as channel:
            stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
            for i in range(n):
                stub.CreateInvoice(
                    invoice_pb2.CreateInvoiceRequest(
                        parent=f"merchants/{self.merchant}",
                        merchant_order_id=f"{prefix}{i}",
                        asset=TOKEN,
                        price=invoice_pb2.FiatAmount(amount="10.00", currency="USD"),
                    )
                )

    def event_ids(self) -> set[str]:
        return {
            str(r["id"])
            for r in db(
                self.setup.dsn, "SELECT id FROM events WHERE merchant_id = $1", self.merchant
            )
        }

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for text in (
            self.setup.run_dir.joinpath("core.log").read_text(errors="replace").splitlines()
        ):
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
        return lines


@pytest.fixture
def running(tmp_path: Path, fresh_dsn: str) -> Iterator[Running]:
    setup = make_core(tmp_path, fresh_dsn)
    process = setup.process().start()
    receiver = Receiver().start()
    merchant = f"procs-{uuid.uuid4().hex[:6]}"
    token = setup.merchant_token(merchant, SCOPES)
    with setup.channel(token) as channel:
        webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhookEndpoint(
            webhook_pb2.CreateWebhookEndpointRequest(
                parent=f"merchants/{merchant}",
                webhook_endpoint=webhook_pb2.WebhookEndpoint(url=receiver.url()),
            )
        )
    run = Running(setup, process, receiver, merchant, token)
    try:
        yield run
    finally:
        receiver.stop()
        # A test may start the core again (run.process): stop that one too, or
        # it outlives the session with its delivery processes.
        for started in {id(process): process, id(run.process): run.process}.values():
            started.stop()


def test_every_process_delivers_each_event_exactly_once_and_counts_on_the_cores_metrics(
    running: Running,
) -> None:
    wait_until(lambda: len(delivery_pids(running.process.pid)) == 2, what="two processes")
    # SERVING once each process has said it reaches the database.
    running.setup.wait_serving("kassa.webhooks")
    running.receiver.delay_s = 0.05
    count = 40
    running.invoices(count, "once")
    wanted = running.event_ids()
    assert len(wanted) == count
    wait_until(lambda: set(running.receiver.got()) >= wanted, what="every event delivered")
    time.sleep(1.0)  # a second delivery of anything would arrive by now
    assert sorted(running.receiver.got()) == sorted(wanted)  # each exactly once
    # Both processes sent: each attempt's line says which process wrote it,
    # in the core's log schema, one line per event.
    attempts = [line for line in running.log_lines() if line.get("msg") == "webhook attempt"]
    assert sorted(str(line["event_id"]) for line in attempts) == sorted(wanted)
    assert {line["delivery_process"] for line in attempts} == {0, 1}
    for line in attempts:
        assert {"ts", "level", "process", "logger", "msg", "request_id"} <= set(line)
        assert line["process"] == "kassa-core" and line["decision"] == "succeeded"
    # Their attempts are on the core's own /metrics, with the processes' health.
    port = running.setup.metrics_port
    samples = metrics.wait_for(
        port,
        lambda s: metrics.value(s, "kassa_webhook_attempts_total", outcome="succeeded") >= count,
        what="the processes' attempts on /metrics",
    )
    assert metrics.value(samples, "kassa_webhook_attempts_total", outcome="succeeded") == count
    for index in ("0", "1"):
        assert metrics.value(samples, "kassa_webhook_delivery_process_up", process=index) == 1
        assert (
            metrics.value(samples, "kassa_webhook_delivery_process_database_ok", process=index) == 1
        )
        assert (
            metrics.value(samples, "kassa_webhook_delivery_process_restarts_total", process=index)
            == 0
        )


def test_a_process_killed_mid_delivery_is_restarted_and_the_delivery_leased_back(
    running: Running,
) -> None:
    wait_until(lambda: len(delivery_pids(running.process.pid)) == 2, what="two processes")
    before = delivery_pids(running.process.pid)
    running.receiver.held.set()
    running.invoices(1, "killed")
    (wanted,) = running.event_ids()
    assert running.receiver.arrived.wait(20), "the attempt never reached the receiver"
    # The attempt is in flight (the receiver holds it): kill every sender.
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    running.receiver.held.clear()
    running.receiver.release.set()
    wait_until(
        lambda: (
            len(delivery_pids(running.process.pid)) == 2
            and not set(delivery_pids(running.process.pid)) & set(before)
        ),
        what="both processes started again",
    )
    # Leased back after its lease (timeout_s + grace) and sent again.
    wait_until(
        lambda: bool(
            db(
                running.setup.dsn,
                "SELECT 1 FROM webhook_deliveries WHERE event_id = $1 AND status = 'succeeded'",
                uuid.UUID(wanted),
            )
        ),
        what="the delivery succeeded after the kill",
    )
    assert running.receiver.got().count(wanted) >= 2  # the killed attempt, and the retry
    (row,) = db(
        running.setup.dsn,
        "SELECT attempt_count FROM webhook_deliveries WHERE event_id = $1",
        uuid.UUID(wanted),
    )
    assert row["attempt_count"] >= 2
    restarts = [
        line
        for line in running.log_lines()
        if line.get("msg") == "webhook delivery process ended; restarting"
    ]
    assert sorted(str(line["index"]) for line in restarts) == ["0", "1"]  # a line per crash
    assert all(line["exit_code"] == -signal.SIGKILL for line in restarts)
    samples = metrics.wait_for(
        running.setup.metrics_port,
        lambda s: metrics.value(s, "kassa_webhook_delivery_process_restarts_total") == 2,
        what="the restarts counted",
    )
    assert metrics.value(samples, "kassa_webhook_delivery_process_restarts_total", process="0") == 1


def test_a_hung_process_is_killed_and_restarted_and_deliveries_go_on(running: Running) -> None:
    wait_until(lambda: len(delivery_pids(running.process.pid)) == 2, what="two processes")
    running.setup.wait_serving("kassa.webhooks")
    before = delivery_pids(running.process.pid)
    stopped = before[0]
    # Hung without ending: it is alive to the kernel, silent to the core.
    os.kill(stopped, signal.SIGSTOP)
    try:
        wait_until(
            lambda: (
                not alive(stopped)
                and len(delivery_pids(running.process.pid)) == 2
                and stopped not in delivery_pids(running.process.pid)
            ),
            # The bound, the first backoff, and room for a loaded machine.
            timeout_s=fleet.HUNG_AFTER_S + fleet.FIRST_RESTART_S + 45,
            what="the stopped process killed and replaced",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGCONT)
    (other,) = set(before) - {stopped}
    assert other in delivery_pids(running.process.pid)  # the healthy one was left alone
    hung = [
        line for line in running.log_lines() if line.get("msg") == "webhook delivery process hung"
    ]
    assert len(hung) == 1, hung
    assert hung[0]["pid"] == stopped and hung[0]["level"] == "error"
    assert float(str(hung[0]["since_report_s"])) > fleet.HUNG_AFTER_S
    index = str(hung[0]["index"])
    # Restarted by the one restart path: its line, its backoff, its counter.
    ended = [
        line
        for line in running.log_lines()
        if line.get("msg") == "webhook delivery process ended; restarting"
    ]
    assert [(str(line["index"]), line["pid"], line["exit_code"]) for line in ended] == [
        (index, stopped, -signal.SIGKILL)
    ]
    samples = metrics.wait_for(
        running.setup.metrics_port,
        lambda s: (
            metrics.value(s, "kassa_webhook_delivery_process_restarts_total", process=index) == 1
        ),
        what="the restart counted",
    )
    assert metrics.value(samples, "kassa_webhook_delivery_process_restarts_total") == 1
    # Sending again: a new delivery goes out (at least once).
    running.setup.wait_serving("kassa.webhooks")
    running.invoices(1, "after-hang")
    (wanted,) = running.event_ids()
    wait_until(lambda: wanted in running.receiver.got(), what="a delivery after the hang")


def test_sigterm_to_the_core_alone_stops_its_processes_and_leaves_nothing_stuck(
    running: Running,
) -> None:
    wait_until(lambda: len(delivery_pids(running.process.pid)) == 2, what="two processes")
    pids = delivery_pids(running.process.pid)
    running.receiver.held.set()
    running.invoices(3, "stop")
    wanted = running.event_ids()
    assert running.receiver.arrived.wait(20)
    # The core alone (not its process group): it must stop its processes itself.
    os.kill(running.process.pid, signal.SIGTERM)
    assert running.process.process is not None
    assert running.process.process.wait(timeout=20) == 0
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=5, what="processes gone")
    # Started again: whatever was in flight at the stop lapses and is sent.
    running.receiver.held.clear()
    running.receiver.release.set()
    running.process = running.setup.process().start()
    wait_until(
        lambda: (
            db(
                running.setup.dsn,
                "SELECT count(*) AS n FROM webhook_deliveries WHERE merchant_id = $1 "
                "AND status = 'succeeded'",
                running.merchant,
            )[0]["n"]
            == len(wanted)
        ),
        what="every delivery succeeded after the restart",
    )
    assert set(running.receiver.got()) == wanted
    assert not db(
        running.setup.dsn,
        "SELECT 1 FROM webhook_deliveries WHERE merchant_id = $1 AND status <> 'succeeded'",
        running.merchant,
    )


def test_processes_of_a_killed_core_stop_by_themselves(running: Running) -> None:
    wait_until(lambda: len(delivery_pids(running.process.pid)) == 2, what="two processes")
    pids = delivery_pids(running.process.pid)
    # SIGKILL to the core alone: its processes see their stdin close.
    os.kill(running.process.pid, signal.SIGKILL)
    assert running.process.process is not None
    running.process.process.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=10, what="processes gone")


def test_a_process_that_cannot_reach_the_database_says_so_and_never_logs_the_password(
    tmp_path: Path,
) -> None:
    password = "pw-" + uuid.uuid4().hex
    secret = tmp_path / "db-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    # Nothing listens at the DSN's port.
    setup = make_core(tmp_path, f"postgresql://kassa@127.0.0.1:{free_port()}/kassa")
    setup.db_password_file = secret
    config = setup.write_config()
    child = subprocess.Popen(
        [sys.executable, "-m", "core.delivery_main", "--config", str(config), "--index", "1"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        report = fleet.read_report(line)
        assert report is not None, line
        assert report.database_ok is False
        assert report.attempts == {}
    finally:
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=20)
    assert child.returncode == 0
    assert password.encode() not in err
    assert password not in " ".join(child.args)  # type: ignore[arg-type]
    lines = [json.loads(text) for text in err.decode().splitlines()]
    refused = [line for line in lines if "cannot reach the database" in str(line["msg"])]
    assert refused, lines
    assert refused[0]["delivery_process"] == 1 and refused[0]["level"] == "warning"


def test_the_core_health_shows_the_processes(running: Running) -> None:
    running.setup.wait_serving("kassa.webhooks")
    samples = metrics.scrape(running.setup.metrics_port)
    assert metrics.value(samples, "kassa_webhook_delivery_process_up") == 2


def test_a_database_outage_shows_on_the_processes_health_and_metrics(
    run_dir: Path, tmp_path: Path
) -> None:
    # A private cluster, stopped and started under the core (run_dir: the postgres
    # user can traverse it).
    cluster = PostgresCluster(run_dir / f"hooks-outage-{uuid.uuid4().hex[:6]}")
    cluster.start()
    try:
        setup = make_core(tmp_path, cluster.create_database("hooks"), delivery_processes=1)
        setup.health = {"invoices_need_chain": False, "interval_s": 0.2}
        process = setup.process().start()
        port = setup.metrics_port
        try:
            setup.wait_serving("kassa.webhooks")
            cluster.stop()
            health_becomes(setup, "kassa.webhooks", health_pb2.HealthCheckResponse.NOT_SERVING)
            metrics.wait_for(
                port,
                lambda s: (
                    metrics.value(s, "kassa_webhook_delivery_process_database_ok", process="0") == 0
                ),
                what="the process without its database on /metrics",
            )
            cluster.start()
            setup.wait_serving("kassa.webhooks")
            samples = metrics.scrape(port)
            assert (
                metrics.value(samples, "kassa_webhook_delivery_process_database_ok", process="0")
                == 1
            )
            # Sending again (restarted meanwhile or not: a worker that met the
            # outage mid-statement may end, and is started again).
            assert metrics.value(samples, "kassa_webhook_delivery_process_up", process="0") == 1
        finally:
            process.stop()
    finally:
        cluster.stop()


def test_without_delivery_processes_the_cores_loop_delivers(tmp_path: Path, fresh_dsn: str) -> None:
    setup = make_core(tmp_path, fresh_dsn, delivery_processes=0)
    process = setup.process().start()
    receiver = Receiver().start()
    try:
        merchant = f"loop-{uuid.uuid4().hex[:6]}"
        token = setup.merchant_token(merchant, SCOPES)
        with setup.channel(token) as channel:
            webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhookEndpoint(
                webhook_pb2.CreateWebhookEndpointRequest(
                    parent=f"merchants/{merchant}",
                    webhook_endpoint=webhook_pb2.WebhookEndpoint(url=receiver.url()),
                )
            )
        run = Running(setup, process, receiver, merchant, token)
        run.invoices(3, "loop")
        wanted = run.event_ids()
        wait_until(lambda: set(receiver.got()) >= wanted, what="every event delivered")
        assert sorted(receiver.got()) == sorted(wanted)
        assert delivery_pids(process.pid) == []
        # No kassa.webhooks entry without processes.
        with setup.bare_channel() as channel, pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="kassa.webhooks"), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        receiver.stop()
        assert process.stop() == 0


def health_becomes(setup: CoreSetup, service: str, status: int) -> None:
    deadline = time.monotonic() + 20
    with setup.bare_channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            seen = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            if seen == status:
                return
            assert time.monotonic() < deadline, f"health of {service!r} stayed {seen}"
            time.sleep(0.1)
