"""The core's link to a real signer (SoftHSM2, mTLS), as an SRE meets it: a core whose
config names a signer checks the link before it opens its port, waits for a signer
that starts beside it, and refuses to start with one JSON line naming the cause
(refused, timeout, the wrong CA, the wrong name, a caller the signer does not allow).
Once serving, a signer that goes away is health `kassa.signer` NOT_SERVING and
`kassa_core_signer_up` 0 while the invoice API stays SERVING, and back when it returns.

The attacker here is whoever answers at the signer's address: the core must not
take a certificate its CA did not sign, or one for another name, for the signer."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.store.migrate import migrate
from localstack.ports import free_port, wait_for_port
from localstack.procs import ManagedProcess, console_script
from localstack.softhsm import SoftHsmToken
from localstack.stack import CoreSetup
from tests.support.metrics import scrape, value
from tests.support.signer import Parties, Signer, make_certs, start_signer

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
INVOICES = "kassa.core.v1.InvoiceService"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA's certificates: what an impostor at the signer's address would hold."""
    return make_certs(tmp_path_factory.mktemp("other-certs"))


@pytest.fixture
def migrated_dsn(fresh_dsn: str) -> str:
    import asyncio

    asyncio.run(migrate(fresh_dsn))
    return fresh_dsn


@pytest.fixture
def signer(softhsm: SoftHsmToken, tmp_path: Path, certs: Path) -> Iterator[Signer]:
    running = start_signer(softhsm, tmp_path / "signer", certs, Parties())
    yield running
    running.close()


def _caller_key(tmp_path: Path) -> Path:
    """The core's Ed25519 caller key (the link check never signs with it)."""
    path = tmp_path / "core-ed25519.key"
    if not path.exists():
        path.write_text("11" * 32)
        path.chmod(0o600)
    return path


def _setup(tmp_path: Path, dsn: str, certs: Path, **signer: object) -> CoreSetup:
    table: dict[str, object] = {
        "ca_file": str(certs / "ca.pem"),
        "cert_file": str(certs / "core.pem"),
        "key_file": str(certs / "core.key"),
        "caller_key_id": "core",
        "caller_key_file": str(_caller_key(tmp_path)),
        "startup_timeout_s": 2,
        **signer,
    }
    return CoreSetup(
        run_dir=tmp_path / "core",
        dsn=dsn,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        certs=certs,
        signer=table,
        health={"interval_s": 0.2},
    )


def _serve(setup: CoreSetup, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("kassa-core"), "--config", str(setup.write_config()), "serve"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The refusal: exit 1, nothing on stdout, exactly one JSON line on stderr."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    [line] = [json.loads(text) for text in result.stderr.splitlines()]
    assert line["level"] == "error" and line["msg"] == "signer link down", line
    return dict(line)


def test_a_signer_that_is_down_is_waited_for_then_one_line_and_exit_1(
    tmp_path: Path, migrated_dsn: str, certs: Path
) -> None:
    port = free_port()
    started = time.monotonic()
    line = _one_line(_serve(_setup(tmp_path, migrated_dsn, certs, target=f"localhost:{port}")))
    assert time.monotonic() - started >= 2, "it waited startup_timeout_s"
    assert line["cause"] == "connection_refused", line
    assert line["signer"] == f"localhost:{port}"
    assert float(str(line["waited_s"])) >= 1.5
    assert "kassa-signer running" in str(line["explanation"])


def test_a_signer_that_never_answers_is_a_timeout(
    tmp_path: Path, migrated_dsn: str, certs: Path
) -> None:
    # A port that accepts TCP (the kernel's backlog) and never speaks TLS.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        line = _one_line(
            _serve(_setup(tmp_path, migrated_dsn, certs, target=target, server_name="localhost"))
        )
    assert line["cause"] == "timeout", line


def test_a_signer_certificate_from_another_ca_is_refused_at_once(
    tmp_path: Path, migrated_dsn: str, certs: Path, other_ca: Path, signer: Signer
) -> None:
    setup = _setup(
        tmp_path,
        migrated_dsn,
        certs,
        target=f"localhost:{signer.port}",
        ca_file=str(other_ca / "ca.pem"),
        startup_timeout_s=30,
    )
    started = time.monotonic()
    line = _one_line(_serve(setup))
    assert time.monotonic() - started < 20, "a certificate no wait can cure is not waited on"
    assert line["cause"] == "tls_certificate_untrusted", line
    assert "signer.ca_file" in str(line["explanation"])


def test_a_signer_certificate_for_another_name_is_refused_at_once(
    tmp_path: Path, migrated_dsn: str, certs: Path, signer: Signer
) -> None:
    setup = _setup(
        tmp_path,
        migrated_dsn,
        certs,
        target=f"localhost:{signer.port}",
        server_name="impostor.kassa",
        startup_timeout_s=30,
    )
    started = time.monotonic()
    line = _one_line(_serve(setup))
    assert time.monotonic() - started < 20
    assert line["cause"] == "tls_server_name_mismatch", line
    assert line["server_name"] == "impostor.kassa"


def test_a_caller_the_signer_does_not_allow_is_refused_and_audited(
    tmp_path: Path, migrated_dsn: str, certs: Path, signer: Signer
) -> None:
    # A certificate of the right CA whose subject (CN=kassa-client) no [[callers]] names.
    setup = _setup(
        tmp_path,
        migrated_dsn,
        certs,
        target=f"localhost:{signer.port}",
        cert_file=str(certs / "client.pem"),
        key_file=str(certs / "client.key"),
        startup_timeout_s=30,
    )
    line = _one_line(_serve(setup))
    assert line["cause"] == "caller_not_allowed", line
    assert "CALLER_NOT_ALLOWED" in str(line["error"])
    refused = [r for r in signer.audit() if r.get("reason") == "CALLER_NOT_ALLOWED"]
    assert refused, "the signer audits the refusal"


def _health(channel: grpc.Channel, service: str) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(reply.status)


def _until(check: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_signer_starting_after_the_core_is_waited_for_and_watched_after(
    tmp_path: Path, migrated_dsn: str, certs: Path, softhsm: SoftHsmToken
) -> None:
    signer_port = free_port()
    setup = _setup(
        tmp_path,
        migrated_dsn,
        certs,
        target=f"localhost:{signer_port}",
        startup_timeout_s=90,
        health_interval_s=0.5,
    )
    log_path = tmp_path / "core.log"
    with open(log_path, "wb") as log:
        core = subprocess.Popen(
            [console_script("kassa-core"), "--config", str(setup.write_config()), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running: Signer | None = None
    try:
        time.sleep(3)  # the core waits: its port is not open yet, it has not exited
        assert core.poll() is None, log_path.read_text()
        assert not _port_open(setup.port)
        running = start_signer(softhsm, tmp_path / "signer", certs, Parties(), port=signer_port)
        wait_for_port(setup.port, 60, alive=lambda: core.poll() is None)
        with setup.bare_channel() as channel:
            assert _health(channel, "kassa.signer") == health_pb2.HealthCheckResponse.SERVING
            up = scrape(setup.metrics_port)
            assert value(up, "kassa_core_signer_up", target=f"localhost:{signer_port}") == 1

            # The signer goes away: visible to monitoring, the invoice API stays up.
            running.close()
            _until(
                lambda: (
                    _health(channel, "kassa.signer") == health_pb2.HealthCheckResponse.NOT_SERVING
                )
            )
            assert _health(channel, INVOICES) == health_pb2.HealthCheckResponse.SERVING
            down = scrape(setup.metrics_port)
            assert value(down, "kassa_core_signer_up", target=f"localhost:{signer_port}") == 0
            assert core.poll() is None

            # It comes back (same state, same port): so does the link.
            again = ManagedProcess(
                "signer",
                running.process.argv,
                tmp_path / "signer" / "signer-again.log",
                port=signer_port,
                env=running.process.env,
            ).start()
            try:
                _until(
                    lambda: (
                        _health(channel, "kassa.signer") == health_pb2.HealthCheckResponse.SERVING
                    )
                )
                core.terminate()
                assert core.wait(timeout=30) == 0
            finally:
                again.stop()
        lines = [json.loads(t) for t in log_path.read_text().splitlines()]
        changes = [(x["msg"], x.get("cause")) for x in lines if "signer link" in str(x["msg"])]
        # Each change of cause is one line. A probe that meets the signer mid-shutdown
        # (its port still accepting, its TLS already gone) reads as a failed handshake
        # before the refused connections that follow; either way the link is logged
        # down with a named cause, never up in between, and up once it is back.
        assert changes[-1] == ("signer link up", None), changes
        downs = changes[:-1]
        assert downs and all(msg == "signer link down" for msg, _ in downs), changes
        assert {cause for _, cause in downs} <= {"connection_refused", "tls_handshake_failed"}
    finally:
        if core.poll() is None:
            core.kill()
            core.wait()
        if running is not None and running.process.running:
            running.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
