"""The signer as several worker processes behind one address (server.workers), against the
compromised core: whichever worker a request reaches, a velocity cap holds exactly, a replayed
request is never signed twice, every outcome is in the one audit chain, and a worker dying
with a request admitted leaves an audit record for it. Real kassa-signer processes on a real
SoftHSM2 token, over mTLS."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.procs import ManagedProcess
from localstack.softhsm import SoftHsmToken
from tests.support.grpc_errors import rich
from tests.support.signer import (
    PAYEE,
    POLICY,
    SIGNER,
    VELO,
    Parties,
    Signer,
    body,
    cli,
    envelope,
    make_certs,
    start_signer,
)

WORKERS = 3
VELO_CAP = 1000  # tests.support.signer.POLICY: hot-1's velocity cap on VELO


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Signer]:
    base = tmp_path_factory.mktemp("workers")
    token = SoftHsmToken(base / "softhsm").init()
    running = start_signer(token, base, certs, Parties(), workers=WORKERS)
    yield running
    assert running.close() == 0


def stubs(s: Signer, count: int) -> list[signer_pb2_grpc.SignerServiceStub]:
    """`count` separate connections (gRPC would otherwise share one): the kernel spreads
    connections over the workers, so requests on these reach different processes."""
    credentials = grpc.ssl_channel_credentials(
        (s.certs / "ca.pem").read_bytes(),
        (s.certs / "core.key").read_bytes(),
        (s.certs / "core.pem").read_bytes(),
    )
    return [
        signer_pb2_grpc.SignerServiceStub(
            grpc.secure_channel(
                f"localhost:{s.port}",
                credentials,
                options=[("grpc.use_local_subchannel_pool", 1)],
            )
        )
        for _ in range(count)
    ]


def send(
    stub: signer_pb2_grpc.SignerServiceStub, request: signer_pb2.SignRequest
) -> signer_pb2.SignResponse | str:
    try:
        response: signer_pb2.SignResponse = stub.Sign(request, timeout=60)
    except grpc.RpcError as exc:
        return rich(exc).reason
    return response


def workers_that_answered(s: Signer) -> set[int]:
    seen = set()
    for line in s.process.log_path.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") in ("signed", "sign refused") and "worker" in entry:
                seen.add(entry["worker"])
    return seen


def test_every_worker_serves(signer: Signer) -> None:
    pids = {
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and _ppid(p) == signer.process.pid
        and "--worker" in (p / "cmdline").read_bytes().decode(errors="replace")
    }
    assert len(pids) == WORKERS


def test_a_velocity_cap_holds_exactly_across_workers(signer: Signer) -> None:
    """40 concurrent requests of 100 on 40 connections against a cap of 1000: exactly 10 are
    signed, whichever workers they reach, and each refusal is audited."""
    before = len(signer.audit())
    core = signer.parties.core
    requests = [envelope(body(asset=VELO, amount=100), core) for _ in range(40)]
    connections = stubs(signer, len(requests))
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(send, connections, requests))
    signed = [r for r in results if isinstance(r, signer_pb2.SignResponse)]
    assert len(signed) == VELO_CAP // 100
    assert sorted(r for r in results if isinstance(r, str)) == ["OVER_VELOCITY_CAP"] * 30
    assert len(workers_that_answered(signer)) > 1, "every request reached one worker"
    records = signer.audit()[before:]
    assert len(records) == 40
    assert sum(r["decision"] == "SIGNED" for r in records) == 10
    # And one more, on any connection, is over the cap: the window's total is shared.
    assert {send(stub, envelope(body(asset=VELO, amount=1), core)) for stub in connections[:6]} == {
        "OVER_VELOCITY_CAP"
    }


def test_a_replay_on_other_workers_is_never_signed_twice(signer: Signer) -> None:
    core = signer.parties.core
    first = body(amount=10**12)
    request = envelope(first, core)
    connections = stubs(signer, 12)
    with ThreadPoolExecutor(max_workers=len(connections)) as pool:
        results = list(pool.map(send, connections, [request] * len(connections)))
    answers = [r for r in results if isinstance(r, signer_pb2.SignResponse)]
    assert answers, results
    assert set(r for r in results if isinstance(r, str)) <= {"REQUEST_IN_FLIGHT"}
    # Every answer is the one signature, replayed; once it is recorded, every worker replays.
    assert len({(a.tx_hash, a.signature) for a in answers}) == 1
    for stub in connections:
        again = send(stub, request)
        assert isinstance(again, signer_pb2.SignResponse)
        assert (again.tx_hash, again.signature) == (answers[0].tx_hash, answers[0].signature)
    # The same id with another body is refused, wherever it lands.
    other = envelope(body(amount=10**12 + 1, request_id=first.request_id), core)
    assert {send(stub, other) for stub in connections} == {"REQUEST_ID_REUSED"}
    mine = [r for r in signer.audit() if r["request_id"] == first.request_id]
    assert [r["decision"] for r in mine].count("SIGNED") == 1
    assert len(mine) == len(connections) * 3  # one record per call, whatever its outcome


def test_the_one_audit_chain_verifies(signer: Signer) -> None:
    verified = cli(signer.token, signer.config, "audit", "verify", str(signer.db))
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith(f"OK: {len(signer.audit())} records"), verified.stdout


def test_a_worker_dying_with_a_request_admitted_is_audited(tmp_path: Path, certs: Path) -> None:
    """SIGKILL every worker while a request waits for its signature: the supervisor stops,
    audits the admitted request as SIGNING_FAILED (no signature left the signer, its velocity
    reservation kept, its id released) and exits non-zero; the chain still verifies."""
    token = SoftHsmToken(tmp_path / "softhsm").init()
    slow = start_signer(
        token,
        tmp_path,
        certs,
        Parties(),
        env={"KASSA_SIGNER_FAULT_SIGN_DELAY_S": "30"},
        workers=2,
    )
    request = envelope(body(asset=VELO, amount=400), slow.parties.core)
    request_id = signer_pb2.SignRequestBody.FromString(request.envelope.body).request_id

    def call() -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as error:
            slow.stub.Sign(request, timeout=60)
        code: grpc.StatusCode = error.value.code()
        return code

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call)
        deadline = time.monotonic() + 20
        while not _claimed(slow, request_id):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for p in Path("/proc").iterdir():
            if p.name.isdigit() and _ppid(p) == slow.process.pid:
                os.kill(int(p.name), signal.SIGKILL)
        assert pending.result() == grpc.StatusCode.UNAVAILABLE
    assert slow.process.process is not None
    assert slow.process.process.wait(timeout=60) != 0
    slow.channel.close()
    record = slow.audit()[-1]
    assert (record["request_id"], record["decision"], record["reason"]) == (
        request_id,
        "REFUSED",
        "SIGNING_FAILED",
    )
    assert record["detail"]["velocity"] == "reservation kept: counted as spent"
    assert record["detail"]["request_id_guard"] == "released"
    assert not _claimed(slow, request_id)
    verified = cli(token, slow.config, "audit", "verify", str(slow.db))
    assert verified.returncode == 0, verified.stdout


def _claimed(s: Signer, request_id: str) -> bool:
    import sqlite3

    conn = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
    try:
        return (
            conn.execute(
                "SELECT 1 FROM requests WHERE request_id = ? AND response IS NULL", (request_id,)
            ).fetchone()
            is not None
        )
    finally:
        conn.close()


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return -1


def test_a_single_signer_killed_mid_request_audits_it_at_restart(
    tmp_path: Path, certs: Path
) -> None:
    """Alone (server.workers = 1), a signer SIGKILLed with a request admitted audits and
    releases that request when it starts again (it holds the state directory, so nothing
    else can be signing it), and then signs the retry."""
    token = SoftHsmToken(tmp_path / "softhsm").init()
    slow = start_signer(
        token, tmp_path, certs, Parties(), env={"KASSA_SIGNER_FAULT_SIGN_DELAY_S": "30"}
    )
    request = envelope(body(asset=VELO, amount=400), slow.parties.core)
    request_id = signer_pb2.SignRequestBody.FromString(request.envelope.body).request_id
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(send, slow.stub, request)
        deadline = time.monotonic() + 20
        while not _claimed(slow, request_id):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        slow.process.kill()
        with pytest.raises(AssertionError):  # no google.rpc.Status: the process is gone
            pending.result()
    slow.channel.close()
    assert slow.audit() == []
    restarted = ManagedProcess(
        "signer-again",
        [SIGNER, "--config", str(slow.config), "serve"],
        tmp_path / "signer-again.log",
        port=slow.port,
        env=token.env,
    ).start()
    again = Signer(token, slow.config, certs, slow.port, slow.parties, restarted, slow.xpub)
    try:
        record = again.audit()[-1]
        assert (record["request_id"], record["reason"]) == (request_id, "SIGNING_FAILED")
        assert record["detail"]["velocity"] == "reservation kept: counted as spent"
        retry = again.stub.Sign(request, timeout=20)
        assert retry.tx_hash
        # Both reservations count: 400 + 400 of the cap of 1000 are spent, so 300 is over.
        assert send(again.stub, envelope(body(asset=VELO, amount=300), slow.parties.core)) == (
            "OVER_VELOCITY_CAP"
        )
    finally:
        assert again.close() == 0


def test_sighup_to_the_supervisor_reloads_every_worker(signer: Signer) -> None:
    """The policy a call meets does not depend on the worker it reaches: after SIGHUP to the
    supervisor, every worker has the new policy (here: PAYEE off the allowlist)."""
    policy_file = signer.config.parent / "policy.toml"
    kept = policy_file.read_text()
    core = signer.parties.core
    connections = stubs(signer, 12)
    try:
        policy_file.write_text(POLICY.replace(f'"{PAYEE}", ', ""))
        os.kill(signer.process.pid, signal.SIGHUP)
        _wait_for_log(signer, "policy reloaded", WORKERS)
        refused = {send(stub, envelope(body(destination=PAYEE), core)) for stub in connections}
        assert refused == {"DESTINATION_NOT_ALLOWED"}
    finally:
        policy_file.write_text(kept)
        os.kill(signer.process.pid, signal.SIGHUP)
        _wait_for_log(signer, "policy reloaded", 2 * WORKERS)
    for stub in connections:
        assert isinstance(
            send(stub, envelope(body(destination=PAYEE), core)), signer_pb2.SignResponse
        )


def _wait_for_log(s: Signer, message: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while _logged(s, message) < count:
        assert time.monotonic() < deadline, f"{message!r} not logged {count} times"
        time.sleep(0.05)


def _logged(s: Signer, message: str) -> int:
    lines = s.process.log_path.read_text().splitlines()
    return sum(1 for line in lines if line.startswith("{") and json.loads(line)["msg"] == message)
