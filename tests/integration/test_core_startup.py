"""Starting the core as an operator would: the schema must be current (`migrate` is
its own step, `serve --migrate` the opt-in), a binary older than the schema refuses,
and a database that is down is one clear log line and exit 1, never a traceback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import grpc
import pytest

from kassa.core.v1 import merchant_pb2, merchant_pb2_grpc
from localstack.ports import free_port
from localstack.procs import console_script
from localstack.stack import CoreSetup

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"


def _setup(
    tmp_path: Path,
    dsn: str,
    password_file: Path | None = None,
    health: dict[str, object] | None = None,
) -> CoreSetup:
    """A core on `dsn` with one chain whose adapter never answers (127.0.0.1:9)."""
    return CoreSetup(
        run_dir=tmp_path,
        dsn=dsn,
        db_password_file=password_file,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        health=health,
    )


def _config(tmp_path: Path, dsn: str, password_file: Path | None = None) -> Path:
    return _setup(tmp_path, dsn, password_file).write_config()


def _core(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("kassa-core"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _only_log_lines(stderr: str) -> list[dict[str, object]]:
    assert "Traceback" not in stderr, stderr
    return [json.loads(line) for line in stderr.splitlines()]


def test_serve_refuses_pending_migrations_until_migrate(tmp_path: Path, fresh_dsn: str) -> None:
    config = _config(tmp_path, fresh_dsn)
    refused = _core(config, "serve")
    assert refused.returncode == 1
    [line] = _only_log_lines(refused.stderr)
    assert line["msg"] == "schema refused" and "pending migration" in str(line["reason"])
    assert "kassa-core --config FILE migrate" in str(line["reason"])

    status = _core(config, "migrate", "--status")
    assert status.returncode == 1
    assert "0001_invoices_payments_events.sql\tpending" in status.stdout
    assert _core(config, "migrate").returncode == 0
    ready = _core(config, "migrate", "--status")
    assert ready.returncode == 0, ready.stdout
    assert "pending" not in ready.stdout and "ready to serve" in ready.stdout


def test_a_schema_newer_than_the_binary_is_refused(tmp_path: Path, fresh_dsn: str) -> None:
    config = _config(tmp_path, fresh_dsn)
    assert _core(config, "migrate").returncode == 0

    async def from_the_future() -> None:
        conn = await asyncpg.connect(fresh_dsn)
        try:
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) "
                "VALUES (999, '0999_from_a_newer_release.sql', 'x')"
            )
        finally:
            await conn.close()

    asyncio.run(from_the_future())
    for args in (("serve",), ("serve", "--migrate"), ("migrate",)):
        result = _core(config, *args)
        assert result.returncode == 1, args
        [line] = _only_log_lines(result.stderr)
        assert "newer than this kassa-core knows" in str(line["reason"]), line
    status = _core(config, "migrate", "--status")
    assert status.returncode == 1 and "0999\tunknown to this binary (newer)" in status.stdout


def test_a_database_down_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    down = f"postgresql://kassa@127.0.0.1:{free_port()}/kassa"
    password = tmp_path / "db-password"
    password.write_text("secret-password\n")
    password.chmod(0o600)
    config = _config(tmp_path, down, password)
    for args in (("serve",), ("serve", "--migrate"), ("migrate",)):
        result = _core(config, *args)
        assert result.returncode == 1, args
        [line] = _only_log_lines(result.stderr)
        assert line["msg"] == "database unreachable" and line["level"] == "error"
        assert str(line["database"]).startswith("127.0.0.1:")
        assert "secret-password" not in result.stderr


def test_an_address_already_taken_is_one_line_and_exit_1(tmp_path: Path, fresh_dsn: str) -> None:
    """The API's port held by another listener, even one with SO_REUSEPORT (as a second
    core's would be): the core does not share it; the metrics port held: the same."""
    assert _core(_config(tmp_path, fresh_dsn), "migrate").returncode == 0
    for what in ("api", "metrics"):
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            taken = holder.getsockname()[1]
            config = CoreSetup(
                run_dir=tmp_path / what,
                dsn=fresh_dsn,
                account_xpub=XPUB,
                chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
                assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
                fixed_rates={"TUSD/USD": "1.00"},
                **({"port": taken} if what == "api" else {"metrics_port": taken}),
            ).write_config()
            result = _core(config, "serve")
        assert result.returncode == 1, (what, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        # gRPC's C core adds its own plain line for a failed bind (docs/operations.md);
        # the core's own lines before it are progress (info).
        logged = [json.loads(t) for t in result.stderr.splitlines() if t.startswith("{")]
        [line] = [x for x in logged if x["level"] != "info"]
        assert line["msg"] == "cannot listen" and line["what"] == what, line
        assert line["listen"] == f"127.0.0.1:{taken}"


def test_a_configuration_it_cannot_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # Both processes that read core.toml (kassa-core and its delivery processes)
    # refuse the same way: one JSON line naming the file and the key, exit 2,
    # and the secret next to the mistake stays out of it.
    password = tmp_path / "db-password"
    password.write_text("secret-password\n")
    password.chmod(0o600)
    config = _config(tmp_path, "postgresql://kassa@127.0.0.1:9/kassa", password)
    config.write_text(
        config.read_text().replace("[webhooks]", "[webhooks]\nno_such_key = 'secret-password'", 1)
        if "[webhooks]" in config.read_text()
        else config.read_text() + "\n[webhooks]\nno_such_key = 'secret-password'\n"
    )
    delivery = [sys.executable, "-m", "core.delivery_main", "--index", "0"]
    for command in ([console_script("kassa-core")], delivery):
        result = subprocess.run(
            [*command, "--config", str(config)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, (command, result.stderr)
        [line] = _only_log_lines(result.stderr)
        assert line["msg"] == "configuration refused" and line["level"] == "error"
        assert line["path"] == str(config)
        assert "no_such_key" in str(line["error"])
        assert "secret-password" not in result.stderr


def test_the_core_serves_on_uvloop_and_stops_on_sigterm(tmp_path: Path, fresh_dsn: str) -> None:
    """kassa-core runs on uvloop (core/event_loop.py): its gRPC server answers over TLS,
    every call is access-logged with its request id, a call with a bad key gets
    UNAUTHENTICATED, and SIGTERM (the loop's signal handler) stops it with exit 0."""
    setup = _setup(tmp_path, fresh_dsn, health={"invoices_need_chain": False})
    process = setup.process().start()
    try:
        setup.wait_serving("kassa.core.v1.MerchantService")  # the database answers
        setup.merchant_token("acme")  # CreateMerchant and CreateApiKey through the edge
        with setup.channel("kassa_nosuchkey_nosecret") as channel:
            stub = merchant_pb2_grpc.MerchantServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetMerchant(
                    merchant_pb2.GetMerchantRequest(name="merchants/acme"),
                    metadata=(("x-request-id", "startup-test-1"),),
                )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        trailers = dict(refused.value.trailing_metadata() or ())  # type: ignore[attr-defined]
        assert trailers["x-request-id"] == "startup-test-1"
    finally:
        assert process.stop() == 0, "core did not stop cleanly on SIGTERM"
    log = (tmp_path / "core.log").read_text()
    assert "Traceback" not in log, log
    lines = [json.loads(t) for t in log.splitlines() if t.startswith("{")]
    [serving] = [x for x in lines if x["msg"] == "core serving"]
    assert serving["event_loop"] == "uvloop", serving
    [denied] = [
        x for x in lines if x["logger"] == "kassa.access" and x["request_id"] == "startup-test-1"
    ]
    assert denied["code"] == "UNAUTHENTICATED" and denied["method"].endswith("/GetMerchant")
    assert "core stopped" in [x["msg"] for x in lines]
