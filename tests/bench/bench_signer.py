"""Signer throughput: end-to-end Sign RPCs/s (mTLS, envelope, decode, intent, policy with
velocity, HSM signature, durable audit) with 1 and 2 signer processes, against the raw PKCS#11
secp256k1 signature rate of the same SoftHSM2 token measured in the same run.

Run: .venv/bin/python -m tests.bench.bench_signer [--seconds 10] [--concurrency 64]
The last line is JSON. Client load runs in separate processes on the same machine, so on a
small machine the clients take CPU from the signers: the figures are end-to-end, honestly so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def raw_rate(module: str, pin: str, seconds: float) -> float:
    """secp256k1 CKM_ECDSA signatures/s on hot-1, in this process, one thread."""
    from signer.config import HsmConfig
    from signer.hsm.thread import HsmThread
    from signer.hsm.token import TokenSession

    thread = HsmThread()
    session = thread.call(TokenSession.open, HsmConfig(module=module), pin)

    def burst() -> float:
        digest, count = bytes(range(32)), 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.sign_raw("hot-1", digest)
            count += 1
        return count / (time.perf_counter() - start)

    try:
        return thread.call(burst)
    finally:
        thread.call(session.close)
        thread.close()


async def _client(
    ports: list[int], certs: Path, core_key: bytes, total: int, concurrency: int
) -> dict[str, float]:
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
    channels = [grpc.aio.secure_channel(f"localhost:{p}", credentials) for p in ports]
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
    }  # type: ignore[dict-item]


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="raw baseline burst length")
    parser.add_argument("--requests", type=int, default=6000, help="Sign calls per phase")
    parser.add_argument("--concurrency", type=int, default=64)
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
    baseline = raw_rate(str(token.module), token.user_pin, args.seconds)
    print(f"raw PKCS#11 secp256k1: {baseline:,.0f} sig/s (1 process)", file=sys.stderr)

    # The same raw rate from two processes at once: the fair baseline for two signers.
    raw_argv = [
        sys.executable,
        "-c",
        "import sys; from tests.bench.bench_signer import raw_rate; "
        f"print(raw_rate({str(token.module)!r}, {token.user_pin!r}, {args.seconds}))",
    ]
    raw_procs = [
        subprocess.Popen(raw_argv, stdout=subprocess.PIPE, text=True, env=os.environ)
        for _ in range(2)
    ]
    baseline_2 = sum(float(p.communicate(timeout=120)[0].strip()) for p in raw_procs)
    print(f"raw PKCS#11 secp256k1: {baseline_2:,.0f} sig/s (2 processes)", file=sys.stderr)

    results: dict[int, float] = {}
    cpu: dict[str, float] = {}
    for count in (1, 2):
        ports = [free_port() for _ in range(count)]
        signers = []
        for i, port in enumerate(ports):
            # Both processes share the token and the state directory (one SQLite file): the
            # request-id guard, velocity and the audit chain stay global.
            config = write_config(
                base / "s1" / f"signer-{i}.toml", token, certs, parties, port, BENCH_POLICY
            )
            signers.append(
                ManagedProcess(
                    f"signer-{i}",
                    [SIGNER, "--config", str(config), "serve"],
                    base / f"signer-{count}-{i}.log",
                    port=port,
                    env=token.env,
                ).start()
            )
        try:
            if count == 1:
                # CPU per call rather than wall time: the machine may be shared and noisy.
                pid, n = signers[0].pid, args.requests
                server0, client0 = process_cpu_s(pid), children_cpu_s()
                empty = run_clients(ports, certs, core_key, n, args.concurrency, 1, empty=True)
                server1, client1 = process_cpu_s(pid), children_cpu_s()
                cpu["empty_rate"] = empty
                cpu["empty_server_ms"] = 1000 * (server1 - server0) / n
                cpu["empty_client_ms"] = 1000 * (client1 - client0) / n
                print(
                    f"empty unary call (Health Check, mTLS): {empty:,.0f} calls/s, server "
                    f"{cpu['empty_server_ms']:.3f} ms CPU/call, client "
                    f"{cpu['empty_client_ms']:.3f} ms",
                    file=sys.stderr,
                )
                server0, client0 = process_cpu_s(pid), children_cpu_s()
            rate = run_clients(
                ports, certs, core_key, args.requests, args.concurrency, processes=count
            )
            if count == 1:
                server1, client1 = process_cpu_s(pid), children_cpu_s()
                cpu["sign_server_ms"] = 1000 * (server1 - server0) / n
                cpu["sign_client_ms"] = 1000 * (client1 - client0) / n
                print(
                    f"Sign CPU: server {cpu['sign_server_ms']:.3f} ms/sign, client "
                    f"{cpu['sign_client_ms']:.3f} ms/sign (incl. building the envelopes)",
                    file=sys.stderr,
                )
        finally:
            for s in signers:
                s.stop()
        results[count] = rate
        print(
            f"end-to-end Sign: {rate:,.0f} sign/s with {count} signer process(es)", file=sys.stderr
        )
    verify = cli(token, first, "audit", "verify", str(base / "s1" / "state" / "signer.sqlite3"))
    print(f"audit: {verify.stdout.strip()}", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "signer",
                "value": round(results[1], 1),
                "unit": "sign/s",
                "baseline": round(baseline, 1),
                "ratio": round(results[1] / baseline, 3),
                "two_process_value": round(results[2], 1),
                "two_process_baseline": round(baseline_2, 1),
                "two_process_ratio": round(results[2] / baseline_2, 3),
                "audit_chain_ok": verify.returncode == 0,
                "empty_call_rate": round(cpu["empty_rate"], 1),
                "cpu_ms": {k: round(v, 3) for k, v in cpu.items() if k != "empty_rate"},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
