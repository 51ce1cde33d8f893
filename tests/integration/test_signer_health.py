"""The signer's grpc.health.v1 tells the truth: NOT_SERVING while its token or its audit
store is unusable, SERVING again when the store is usable again. A real SoftHSM2 token
and a real SQLite state file, made unusable the way an operator's mistake or a failing
disk would: the token directory removed, the state file locked by another process or
replaced underneath the signer."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localstack.ports import free_port
from localstack.procs import ManagedProcess, console_script
from localstack.softhsm import SoftHsmToken

SIGNER = console_script("kassa-signer")
SERVICE = "kassa.signer.v1.SignerService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
POLICY = """
[chains."eip155:1"]
max_fee_per_gas = "100000000000"
max_gas = 200000
max_total_fee = "10000000000000000"
"""


@dataclass
class Signer:
    process: ManagedProcess
    health: health_pb2_grpc.HealthStub
    state_file: Path
    log: Path

    def becomes(self, status: int, timeout_s: float = 40) -> None:
        deadline = time.monotonic() + timeout_s
        seen = {}
        while True:
            seen = {
                name: self.health.Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=5
                ).status
                for name in ("", SERVICE)
            }
            if set(seen.values()) == {status}:
                return
            assert time.monotonic() < deadline, f"health stayed {seen}, expected {status}"
            time.sleep(0.2)


@pytest.fixture
def signer(softhsm: SoftHsmToken, tmp_path: Path) -> Iterator[Signer]:
    port = free_port()
    caller = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    config = tmp_path / "signer.toml"
    (tmp_path / "policy.toml").write_text(POLICY)
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\ninsecure_loopback_only = true\n'
        f'[hsm]\nmodule = "{softhsm.module}"\npin_file = "{softhsm.pin_file}"\n'
        '[state]\ndir = "state"\n[policy]\nfile = "policy.toml"\n'
        f'[[callers]]\nkey_id = "core"\nrole = "payments"\ned25519_public_key = "{caller.hex()}"\n'
    )
    subprocess.run(
        [SIGNER, "--config", str(config), "keys", "init"],
        capture_output=True,
        env={**os.environ, **softhsm.env},
        timeout=60,
        check=True,
    )
    process = ManagedProcess(
        "signer",
        [SIGNER, "--config", str(config), "serve"],
        tmp_path / "signer.log",
        port=port,
        env=softhsm.env,
    ).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Signer(
            process,
            health_pb2_grpc.HealthStub(channel),
            tmp_path / "state" / "signer.sqlite3",
            tmp_path / "signer.log",
        )
    finally:
        channel.close()
        process.stop()


def test_a_token_that_is_gone_is_not_serving(signer: Signer, softhsm: SoftHsmToken) -> None:
    signer.becomes(SERVING)
    shutil.rmtree(softhsm.tokens_dir)
    signer.becomes(NOT_SERVING)
    assert "is no longer on the token" in signer.log.read_text()


def test_a_locked_audit_store_is_not_serving_until_it_is_released(signer: Signer) -> None:
    signer.becomes(SERVING)
    other = sqlite3.connect(signer.state_file, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        signer.becomes(NOT_SERVING)
    finally:
        other.execute("ROLLBACK")
        other.close()
    signer.becomes(SERVING)
    assert "cannot sign: NOT_SERVING" in signer.log.read_text()


def test_a_replaced_audit_store_is_not_serving(signer: Signer) -> None:
    signer.becomes(SERVING)
    moved = signer.state_file.with_name("moved-away")
    signer.state_file.rename(moved)
    shutil.copyfile(moved, signer.state_file)
    signer.becomes(NOT_SERVING)
    assert "the state file was replaced" in signer.log.read_text()
