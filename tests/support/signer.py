"""A real kassa-signer over mTLS on a real SoftHSM2 token, and a caller that builds, signs and
sends envelopes the way the core must. Shared by the signer integration tests and the bench."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import rlp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from google.protobuf.timestamp_pb2 import Timestamp

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.paths import REPO
from localstack.ports import free_port
from localstack.procs import ManagedProcess, console_script
from localstack.softhsm import SoftHsmToken
from signer.envelope.digest import body_digest

SIGNER = console_script("kassa-signer")
ETH = "eip155:1/slip44:60"
TOKEN = "0x" + "7e" * 20
USDC = f"eip155:1/erc20:{TOKEN}"
VELO_TOKEN = "0x" + "5e" * 20
VELO = f"eip155:1/erc20:{VELO_TOKEN}"
PAYEE = "0x" + "a1" * 20
PAYEE_2 = "0x" + "a2" * 20
STRANGER = "0x" + "bd" * 20
TRANSFER = bytes(function_signature_to_4byte_selector("transfer(address,uint256)"))
APPROVE = bytes(function_signature_to_4byte_selector("approve(address,uint256)"))

TREASURY = "0x" + "7a" * 20
# Fee caps above what unsigned_tx builds (100,000 gas at 30 gwei, legacy 20 gwei).
MAX_FEE_PER_GAS = 100 * 10**9
MAX_GAS = 200_000
MAX_TOTAL_FEE = 10**16
GAS_FUNDING_MAX = 10**16

POLICY = f"""
version = 1
[chains."eip155:1"]
treasury = "{TREASURY}"
gas_funding_max = "{GAS_FUNDING_MAX}"
max_fee_per_gas = "{MAX_FEE_PER_GAS}"
max_gas = {MAX_GAS}
max_total_fee = "{MAX_TOTAL_FEE}"

[allowlists]
payees = ["{PAYEE}", "{PAYEE_2}"]

[caps]
"{ETH}" = "1000000000000000000"
"{USDC}" = "1000000000"
"{VELO}" = "unlimited"

[[velocity]]
key_id = "hot-1"
asset = "{VELO}"
max_amount = "1000"

[[velocity]]
key_id = "hot-1"
asset = "{ETH}"
max_amount = "1000000000000000000000"

[[velocity]]
key_id = "hot-1"
asset = "{USDC}"
max_amount = "1000000000000"

[[rules]]
name = "sweeps"
caller_role = "payments"
purpose = "SWEEP"
key_id = "hd:*"
chain = "eip155:1"
asset = ["{ETH}", "{USDC}", "{VELO}"]
action = "allow"

[[rules]]
name = "payees only"
purpose = ["PAYOUT", "REFUND"]
destination_not_in = "payees"
action = "block"

[[rules]]
name = "large ETH payouts"
key_id = "hot-1"
purpose = ["PAYOUT", "REFUND"]
chain = "eip155:1"
asset = "{ETH}"
amount_above = "500000000000000000"
action = "require_approvals"
approvers = ["alice", "bob", "carol"]
threshold = 2

[[rules]]
name = "payments"
caller_role = "payments"
key_id = "hot-1"
purpose = ["PAYOUT", "REFUND"]
chain = "eip155:1"
asset = ["{ETH}", "{USDC}", "{VELO}"]
action = "allow"
"""


def _raw_public(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def make_certs(out_dir: Path) -> Path:
    subprocess.run(
        [str(REPO / "scripts" / "make-dev-certs"), str(out_dir)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out_dir


@dataclass
class Parties:
    core: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    adapters: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    approvers: dict[str, Ed25519PrivateKey] = field(
        default_factory=lambda: {
            name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol")
        }
    )


def write_config(
    path: Path,
    token: SoftHsmToken,
    certs: Path,
    parties: Parties,
    port: int,
    policy: str = POLICY,
    state: str = "state",
    workers: int = 1,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "policy.toml").write_text(policy)
    lines = [
        f'[server]\nlisten = "127.0.0.1:{port}"\nworkers = {workers}\n',
        f'[hsm]\nmodule = "{token.module}"\npin_file = "{token.pin_file}"\n',
        f'[state]\ndir = "{state}"\n',
        f'[tls]\nca_file = "{certs}/ca.pem"\ncert_file = "{certs}/signer.pem"\n'
        f'key_file = "{certs}/signer.key"\n',
        '[policy]\nfile = "policy.toml"\n',
        f'[[callers]]\nkey_id = "core"\nrole = "payments"\ntls_subject = "CN=kassa-core"\n'
        f'ed25519_public_key = "{_raw_public(parties.core)}"\n',
        f'[[callers]]\nkey_id = "adapters"\nrole = "chain"\ntls_subject = "CN=kassa-adapters"\n'
        f'ed25519_public_key = "{_raw_public(parties.adapters)}"\n',
    ]
    for name, key in parties.approvers.items():
        lines.append(
            f'[[approvers]]\nkey_id = "{name}"\ned25519_public_key = "{_raw_public(key)}"\n'
        )
    path.write_text("\n".join(lines))
    return path


def cli(token: SoftHsmToken, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNER, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **token.env},
        timeout=120,
    )


def channel(port: int, certs: Path, party: str | None = "core") -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        None if party is None else (certs / f"{party}.key").read_bytes(),
        None if party is None else (certs / f"{party}.pem").read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


@dataclass
class Signer:
    token: SoftHsmToken
    config: Path
    certs: Path
    port: int
    parties: Parties
    process: ManagedProcess
    xpub: str
    channel: grpc.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = channel(self.port, self.certs)
        self.stub = signer_pb2_grpc.SignerServiceStub(self.channel)

    @property
    def db(self) -> Path:
        return self.config.parent / "state" / "signer.sqlite3"

    def audit(self) -> list[dict[str, Any]]:
        import json

        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return [json.loads(r[0]) for r in conn.execute("SELECT record FROM audit ORDER BY seq")]
        finally:
            conn.close()

    def close(self) -> int | None:
        self.channel.close()
        return self.process.stop()


def start_signer(
    token: SoftHsmToken,
    base: Path,
    certs: Path,
    parties: Parties,
    policy: str = POLICY,
    env: dict[str, str] | None = None,
    workers: int = 1,
    port: int | None = None,
) -> Signer:
    port = port or free_port()
    config = write_config(
        base / "signer.toml", token, certs, parties, port, policy, workers=workers
    )
    init = cli(token, config, "keys", "init")
    assert init.returncode == 0, init.stderr
    process = ManagedProcess(
        "signer",
        [SIGNER, "--config", str(config), "serve"],
        base / "signer.log",
        port=port,
        env={**token.env, **(env or {})},
    ).start()
    if workers > 1:
        # The supervisor starts workers one by one (the port answers with the first) and logs
        # "workers started" once the last one serves.
        deadline = time.monotonic() + 120
        while '"workers started"' not in process.log_path.read_text():
            assert process.running, process.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
    return Signer(token, config, certs, port, parties, process, init.stdout.strip())


# -- building requests, as the core must


def address_bytes(address: str) -> bytes:
    return bytes.fromhex(address.removeprefix("0x"))


def unsigned_tx(
    kind: str, chain_id: int, to: str, value: int, data: bytes = b"", nonce: int = 0
) -> bytes:
    if kind == "eip1559":
        return b"\x02" + bytes(
            rlp.encode(
                [chain_id, nonce, 10**9, 30 * 10**9, 100_000, address_bytes(to), value, data, []]
            )
        )
    return bytes(
        rlp.encode([nonce, 20 * 10**9, 100_000, address_bytes(to), value, data, chain_id, 0, 0])
    )


def erc20_transfer(recipient: str, amount: int) -> bytes:
    return TRANSFER + encode(["address", "uint256"], [address_bytes(recipient), amount])


def body(
    *,
    asset: str = ETH,
    destination: str = PAYEE,
    amount: int = 10**15,
    key_id: str = "hot-1",
    kind: str = "eip1559",
    purpose: Any = signer_pb2.PURPOSE_PAYOUT,
    chain: str = "eip155:1",
    tx: bytes | None = None,
    request_id: str | None = None,
    issue_s: float | None = None,
    lifetime_s: float = 30,
) -> signer_pb2.SignRequestBody:
    if tx is None:
        if asset.startswith(f"{chain}/erc20:") or "/erc20:" in asset:
            token = asset.rsplit(":", 1)[1]
            tx = unsigned_tx(
                kind, int(chain.split(":")[1]), token, 0, erc20_transfer(destination, amount)
            )
        else:
            tx = unsigned_tx(kind, int(chain.split(":")[1]), destination, amount)
    issue = time.time() if issue_s is None else issue_s
    issue_time, expire_time = Timestamp(), Timestamp()
    issue_time.FromNanoseconds(int(issue * 1e9))
    expire_time.FromNanoseconds(int((issue + lifetime_s) * 1e9))
    return signer_pb2.SignRequestBody(
        request_id=request_id or str(uuid.uuid4()),
        key_id=key_id,
        chain=chain,
        unsigned_transaction=tx,
        intent=signer_pb2.Intent(
            destination=destination,
            asset=asset,
            amount=str(amount),
            purpose=purpose,
            reference="merchants/m1/payouts/p1",
        ),
        issue_time=issue_time,
        expire_time=expire_time,
    )


def envelope(
    body_msg: signer_pb2.SignRequestBody | bytes,
    caller: Ed25519PrivateKey,
    caller_key_id: str = "core",
    approvers: dict[str, Ed25519PrivateKey] | None = None,
) -> signer_pb2.SignRequest:
    raw = body_msg if isinstance(body_msg, bytes) else body_msg.SerializeToString()
    digest = body_digest(raw)
    return signer_pb2.SignRequest(
        envelope=signer_pb2.SignedEnvelope(
            body=raw,
            caller_key_id=caller_key_id,
            caller_signature=caller.sign(digest),
            approvals=[
                signer_pb2.Approval(approver_key_id=name, signature=key.sign(digest))
                for name, key in (approvers or {}).items()
            ],
        )
    )
