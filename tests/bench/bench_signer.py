"""Signer throughput: end-to-end Sign RPCs/s (mTLS, envelope, decode, intent, policy with
velocity, HSM signature, durable audit) with 1, 2 and 4 signer worker processes
(server.workers, one listen address), each against the raw PKCS#11 secp256k1 signature rate
of the same SoftHSM2 token from the same number of processes, measured in the same run just
before it.

Run: .venv/bin/python -m tests.bench.bench_signer [--processes 1,2,4] [--requests 6000]
The last line is JSON. Client load runs in separate processes on the same machine, so on a
small machine the clients take CPU from the signers: the figures are end-to-end, honestly so.
CPU per Sign (server: the supervisor and all its workers; client: the load processes) and
per raw signature is reported too: on a shared machine CPU time is steadier than rates, and
it gives each point's ceiling: with C cores shared by signer and clients, no run can exceed
C / (server + client CPU per Sign) signs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

ETH = "eip155:1/slip44:60"
PAYEE = "0x" + "a1" * 20
BENCH_POLICY = f"""
[chains."eip155:1"]
max_fee_per_gas = "100000000000"
max_gas = 200000
max_total_fee = "20000000000000000"
[allowlists]
payees = ["{PAYEE}"]
[caps]
"{ETH}" = "1000000000000000000"
[[velocity]]
key_id = "hot-1"
asset = "{ETH}"
max_amount = "1000000000000000000000000"
[[rules]]
name = "payees only"
destination_not_in = "payees"
action = "block"
[[rules]]
name = "payments"
caller_role = "payments"
purpose = "PAYOUT"
key_id = "hot-1"
chain = "eip155:1"
asset = "{ETH}"
action = "allow"
"""


def raw_rate(module: str, pin: str, seconds: float) -> tuple[float, float]:
    """(secp256k1 CKM_ECDSA signatures/s, CPU ms per signature) on hot-1, in this process, one
    thread: the best a process doing nothing else gets from the token."""
    from pkcs11.exceptions import PKCS11Error

    from signer.config import HsmConfig
    from signer.hsm.thread import HsmThread
    from signer.hsm.token import HsmError, TokenSession

    thread = HsmThread()
    for attempt in range(5):
        # Processes opening a SoftHSM2 token at the same moment can miss it (its files read
        # mid-update) or fail the login (CKR_GENERAL_ERROR); the signer's supervisor starts
        # workers one by one for that reason.
        try:
            session = thread.call(TokenSession.open, HsmConfig(module=module), pin)
            break
        except (HsmError, PKCS11Error):
            if attempt == 4:
                raise
            time.sleep(0.2 + random.random())

    def burst() -> tuple[float, float]:
        digest, count = bytes(range(32)), 0
        session.sign_raw("hot-1", digest)  # the key handle cached, as the signer has it
        start, cpu0 = time.perf_counter(), time.thread_time()
        while time.perf_counter() - start < seconds:
            session.sign_raw("hot-1", digest)
            count += 1
        cpu_ms = 1000 * (time.thread_time() - cpu0) / count
        return count / (time.perf_counter() - start), cpu_ms

    try:
        return thread.call(burst)
    finally:
        thread.call(session.close)
        thread.close()


def raw_rate_processes(
    module: str, pin: str, seconds: float, processes: int
) -> tuple[float, float]:
    """The raw rate summed over `processes` processes signing at once (each its own session),
    and the mean CPU ms per signature: the fair baseline for that many signer workers."""
    argv = [
        sys.executable,
        "-c",
        "import json; from tests.bench.bench_signer import raw_rate; "
        f"print(json.dumps(raw_rate({module!r}, {pin!r}, {seconds})))",
    ]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=os.environ)
        for _ in range(processes)
    ]
    results = [json.loads(p.communicate(timeout=120)[0].strip()) for p in procs]
    return sum(r[0] for r in results), sum(r[1] for r in results) / len(results)


async def _client(
    ports: list[int], certs: Path, core_key: bytes, total: int, concurrency: int
) -> dict[str, Any]:
    import grpc

    from kassa.signer.v1 import signer_pb2_grpc
    from tests.support.signer import body, envelope

    key = Ed25519PrivateKey.from_private_bytes(core_key)
    requests = [envelope(body(amount=10**12 + i, destination=PAYEE), key) for i in range(total)]
    credentials = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "core.key").read_bytes(),
        (certs / "core.pem").read_bytes(),
    )
    # Own connections (not gRPC's shared subchannel pool): the kernel spreads connections, not
    # calls, over the workers behind the port.
    channels = [
        grpc.aio.secure_channel(
            f"localhost:{p}", credentials, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for p in ports
    ]
    stubs = [signer_pb2_grpc.SignerServiceStub(c) for c in channels]
    for stub in stubs:  # connect and warm up before timing
        await stub.Sign(requests.pop(), timeout=30)
    errors: dict[str, int] = {}
    queue = list(reversed(requests))

    async def worker(stub: signer_pb2_grpc.SignerServiceStub) -> None:
        while queue:
            request = queue.pop()
            try:
                await stub.Sign(request, timeout=60)
            except grpc.RpcError as exc:
                errors[str(exc.code())] = errors.get(str(exc.code()), 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    for c in channels:
        await c.close()
    return {
        "ok": len(requests) - sum(errors.values()),
        "errors": sum(errors.values()),
        "seconds": elapsed,
        "by_code": errors,
    }


async def _empty_client(port: int, certs: Path, total: int, concurrency: int) -> dict[str, float]:
    """Health Check over the same mTLS: the cost of an empty unary call on this machine."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    credentials = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "core.key").read_bytes(),
        (certs / "core.pem").read_bytes(),
    )
    channel = grpc.aio.secure_channel(f"localhost:{port}", credentials)
    stub = health_pb2_grpc.HealthStub(channel)
    await stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
    left = [total]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=60)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await channel.close()
    return {"ok": total, "errors": 0, "seconds": elapsed, "by_code": {}}  # type: ignore[dict-item]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pids: list[int]) -> float:
    return sum(process_cpu_s(p) for p in pids)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


def run_clients(
    ports: list[int],
    certs: Path,
    core_key: bytes,
    total: int,
    concurrency: int,
    processes: int,
    empty: bool = False,
) -> float:
    """Sign RPCs/s (or empty Health calls/s) summed over `processes` client processes."""
    argv = [
        sys.executable,
        "-m",
        "tests.bench.bench_signer",
        "--client",
        json.dumps(
            {
                "ports": ports,
                "certs": str(certs),
                "key": core_key.hex(),
                "total": total // processes,
                "concurrency": concurrency // processes,
                "empty": empty,
            }
        ),
    ]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    results = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    for r in results:
        if r["errors"]:
            print(f"client errors: {r['by_code']}", file=sys.stderr)
    ok = sum(r["ok"] for r in results)
    return float(ok / max(r["seconds"] for r in results))


def thread_cpu_s(pid: int, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds per thread of a process, by Python thread name where known."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        tid = int(task.name)
        name = names.get(tid) or ("MainThread" if tid == pid else f"{comm}-{tid}")
        used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[name] = out.get(name, 0.0) + used
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Thread id -> Python thread name, from `py-spy dump` when py-spy is installed (it is not
    a project dependency: `pip install py-spy==0.4.3`); empty without it."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {}
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True)
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r'Thread (\d+) \([^)]*\): "([^"]+)"', dump.stdout)
    }


def profile_threads(
    pid: int, ports: list[int], certs: Path, core_key: bytes, n: int, concurrency: int
) -> None:
    """Where a Sign's server CPU goes, thread by thread (the event loop, the HSM thread, the
    store thread, gRPC's own), next to an empty unary call's: printed to stderr."""
    names = thread_names(pid)
    for label, empty in (("empty call", True), ("Sign", False)):
        before = thread_cpu_s(pid, names)
        rate = run_clients(ports, certs, core_key, n, concurrency, 1, empty=empty)
        after = thread_cpu_s(pid, names)
        spent = {k: 1000 * (v - before.get(k, 0.0)) / n for k, v in after.items()}
        print(
            f"profile, {label}: {rate:,.0f}/s, server {sum(spent.values()):.3f} ms CPU/call",
            file=sys.stderr,
        )
        for name, ms in sorted(spent.items(), key=lambda kv: -kv[1]):
            if ms >= 0.005:
                print(f"    {name:28s} {ms:.3f} ms", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="raw baseline burst length")
    parser.add_argument("--requests", type=int, default=6000, help="Sign calls per point")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--processes", default="1,2,4", help="signer worker counts to measure")
    parser.add_argument(
        "--profile", action="store_true", help="also split one worker's CPU per Sign by thread"
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        spec = json.loads(args.client)
        if spec.get("empty"):
            result = asyncio.run(
                _empty_client(
                    spec["ports"][0], Path(spec["certs"]), spec["total"], spec["concurrency"]
                )
            )
        else:
            result = asyncio.run(
                _client(
                    spec["ports"],
                    Path(spec["certs"]),
                    bytes.fromhex(spec["key"]),
                    spec["total"],
                    spec["concurrency"],
                )
            )
        print(json.dumps(result))
        return 0

    from localstack.ports import free_port
    from localstack.procs import ManagedProcess
    from localstack.softhsm import SoftHsmToken
    from tests.support.signer import (
        SIGNER,
        Parties,
        cli,
        make_certs,
        write_config,
    )

    counts = [int(c) for c in args.processes.split(",")]
    cores = os.cpu_count() or 1
    base = Path(tempfile.mkdtemp(prefix="kassa-bench-signer-"))
    token = SoftHsmToken(base / "softhsm").init()
    certs = make_certs(base / "certs")
    parties = Parties()
    core_key = parties.core.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    first = write_config(
        base / "s1" / "signer.toml", token, certs, parties, free_port(), BENCH_POLICY
    )
    assert cli(token, first, "keys", "init").returncode == 0
    os.environ.update(token.env)
    module, pin = str(token.module), token.user_pin

    points: list[dict[str, object]] = []
    cpu: dict[str, float] = {}
    signed = 0
    for count in counts:
        baseline, hsm_ms = raw_rate_processes(module, pin, args.seconds, count)
        print(
            f"raw PKCS#11 secp256k1: {baseline:,.0f} sig/s ({count} process(es)), "
            f"{hsm_ms:.3f} ms CPU/sig",
            file=sys.stderr,
        )
        port = free_port()
        # One signer (a supervisor and `count` workers, or one process) on one address; every
        # worker shares the state directory: the request-id guard, velocity and the audit chain.
        config = write_config(
            base / "s1" / f"signer-{count}.toml",
            token,
            certs,
            parties,
            port,
            BENCH_POLICY,
            workers=count,
        )
        signer = ManagedProcess(
            f"signer-{count}",
            [SIGNER, "--config", str(config), "serve"],
            base / f"signer-{count}.log",
            port=port,
            env=token.env,
        ).start()
        try:
            pids = [signer.pid]
            if count > 1:
                # The supervisor starts workers one by one (the port answers with the first)
                # and logs "workers started" when the last one serves.
                deadline = time.monotonic() + 120
                while '"workers started"' not in signer.log_path.read_text():
                    assert time.monotonic() < deadline, "workers did not start"
                    time.sleep(0.2)
                pids += children_of(signer.pid)
                assert len(pids) == count + 1, pids
            n = args.requests
            clients = 1 if count == 1 else 2
            if count == 1:
                server0, client0 = tree_cpu_s(pids), children_cpu_s()
                empty = run_clients([port], certs, core_key, n, args.concurrency, 1, empty=True)
                server1, client1 = tree_cpu_s(pids), children_cpu_s()
                cpu["empty_rate"] = empty
                cpu["empty_server_ms"] = 1000 * (server1 - server0) / n
                cpu["empty_client_ms"] = 1000 * (client1 - client0) / n
                print(
                    f"empty unary call (Health Check, mTLS): {empty:,.0f} calls/s, server "
                    f"{cpu['empty_server_ms']:.3f} ms CPU/call, client "
                    f"{cpu['empty_client_ms']:.3f} ms",
                    file=sys.stderr,
                )
                if args.profile:
                    profile_threads(
                        signer.pid, [port] * 4, certs, core_key, n // 2, args.concurrency
                    )
                    signed += n // 2
            server0, client0 = tree_cpu_s(pids), children_cpu_s()
            rate = run_clients(
                [port] * (4 * count), certs, core_key, n, args.concurrency, processes=clients
            )
            server_ms = 1000 * (tree_cpu_s(pids) - server0) / n
            client_ms = 1000 * (children_cpu_s() - client0) / n
            signed += n
        finally:
            code = signer.stop()
        assert code == 0, f"signer with {count} worker(s) exited {code}"
        # The CPU bounds, steadier than rates on a shared machine: signer and clients share
        # the cores, so no run exceeds `ceiling`; the raw processes with the cores to themselves
        # would sign `raw_alone` per second. Their quotient is the best ratio this code can
        # reach on this machine, however quiet it is.
        ceiling = 1000 * cores / (server_ms + client_ms)
        raw_alone = 1000 * min(count, cores) / hsm_ms
        point = {
            "processes": count,
            "value": round(rate, 1),
            "baseline": round(baseline, 1),
            "ratio": round(rate / baseline, 3),
            "server_cpu_ms": round(server_ms, 3),
            "client_cpu_ms": round(client_ms, 3),
            "hsm_cpu_ms": round(hsm_ms, 3),
            "cpu_ceiling": round(ceiling, 1),
            "raw_alone": round(raw_alone, 1),
            "cpu_bound_ratio": round(ceiling / raw_alone, 3),
        }
        points.append(point)
        print(
            f"end-to-end Sign: {rate:,.0f} sign/s with {count} worker process(es): ratio "
            f"{rate / baseline:.2f}; CPU per Sign server {server_ms:.3f} ms + client "
            f"{client_ms:.3f} ms (HSM alone {hsm_ms:.3f} ms): {cores} cores allow at most "
            f"{ceiling:,.0f} sign/s, vs raw {raw_alone:,.0f}/s on free cores: "
            f"bound {ceiling / raw_alone:.2f}",
            file=sys.stderr,
        )
    verify = cli(token, first, "audit", "verify", str(base / "s1" / "state" / "signer.sqlite3"))
    print(f"audit: {verify.stdout.strip()}", file=sys.stderr)
    one = points[0]
    print(
        json.dumps(
            {
                "bench": "signer",
                "value": one["value"],
                "unit": "sign/s",
                "baseline": one["baseline"],
                "ratio": one["ratio"],
                "processes": one["processes"],
                "points": points,
                "cores": cores,
                "audit_chain_ok": verify.returncode == 0
                and verify.stdout.startswith(f"OK: {signed} records"),
                "empty_call_rate": round(cpu.get("empty_rate", 0.0), 1),
                "cpu_ms": {k: round(v, 3) for k, v in cpu.items() if k != "empty_rate"},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
