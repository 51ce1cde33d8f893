"""The whole local stack: PostgreSQL, SoftHSM2, one anvil node and test token
per chain, then Kassa's signer, one EVM adapter per chain and the core as
separate processes.

Used by scripts/demo and the end-to-end tests; everything lives under one
run directory.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from localstack.anvil import Anvil
from localstack.paths import REPO
from localstack.ports import free_port
from localstack.postgres import PostgresCluster
from localstack.procs import ManagedProcess, console_script
from localstack.softhsm import SoftHsmToken
from localstack.stack import CoreSetup, write_toml
from localstack.token import Token, deploy

MERCHANT = "merchants/demo"
APPROVERS = ("alice", "bob")
# Payouts of the test token above this (base units) need 2 of the approvers.
APPROVAL_ABOVE_TOKEN = 1_000 * 10**6
# ...and native payouts above this (wei).
APPROVAL_ABOVE_WEI = 5 * 10**17
# The hot key's float on each chain: payouts are paid from it.
HOT_FLOAT_WEI = 100 * 10**18
HOT_FLOAT_TOKEN = 100_000 * 10**6
# The signer policy's bounds (policy_text): fees as the core's payouts config caps them
# (500 gwei, a token transfer's 100,000 gas), per-transaction caps, and per window what the
# hot key and all deposit keys together may send — whoever holds the core's credentials.
SIGNER_MAX_FEE_PER_GAS_WEI = 500 * 10**9
SIGNER_MAX_GAS = 100_000
SIGNER_MAX_TOTAL_FEE_WEI = SIGNER_MAX_FEE_PER_GAS_WEI * SIGNER_MAX_GAS
TX_CAP_WEI = 10 * 10**18
TX_CAP_TOKEN = 100_000 * 10**6
HOT_VELOCITY_WEI = 5 * 10**18
HOT_VELOCITY_TOKEN = 25_000 * 10**6
DEPOSIT_VELOCITY_WEI = 20 * 10**18
DEPOSIT_VELOCITY_TOKEN = 250_000 * 10**6
VELOCITY_WINDOW_S = 86_400


def _raw_public(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def _raw_private(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()


@dataclass(frozen=True)
class PolicyChain:
    """What the signer policy names of a chain."""

    chain: str  # CAIP-2
    token_asset: str  # CAIP-19 of the chain's test token
    treasury: str

    @property
    def native_asset(self) -> str:
        return f"{self.chain}/slip44:60"


def signer_policy(chains: Sequence[PolicyChain], velocity_window_s: int = VELOCITY_WINDOW_S) -> str:
    """The signer's policy `scripts/localstack` installs, a safe starting point
    (docs/threat-model.md explains each bound): pinned chains and assets, fee caps per chain, sweeps only from deposit keys
    and only to the chain's treasury, gas funding only in the native coin to the deposit
    address the signer derives itself and at most one sweep's gas, nonce fills (value 0, no
    data, to the hot key's own address, which the signer derives itself), payouts and refunds
    from the hot key with a per-transaction cap, approvals above a threshold and velocity
    caps per 24 h (the hot key's fees count toward its native cap)."""
    chain_tables = "".join(
        f"""[chains."{c.chain}"]
treasury = "{c.treasury.lower()}"
gas_funding_max = "{SIGNER_MAX_TOTAL_FEE_WEI}"
max_fee_per_gas = "{SIGNER_MAX_FEE_PER_GAS_WEI}"
max_gas = {SIGNER_MAX_GAS}
max_total_fee = "{SIGNER_MAX_TOTAL_FEE_WEI}"

"""
        for c in chains
    )
    caps = "".join(
        f'"{c.native_asset}" = "{TX_CAP_WEI}"\n"{c.token_asset.lower()}" = "{TX_CAP_TOKEN}"\n'
        for c in chains
    )
    velocity = "".join(
        f"""[[velocity]]
key_id = "{key}"
asset = "{asset}"
max_amount = "{amount}"
window_s = {velocity_window_s}

"""
        for c in chains
        for key, asset, amount in (
            ("hot-1", c.native_asset, HOT_VELOCITY_WEI),
            ("hot-1", c.token_asset.lower(), HOT_VELOCITY_TOKEN),
            ("hd:*", c.native_asset, DEPOSIT_VELOCITY_WEI),
            ("hd:*", c.token_asset.lower(), DEPOSIT_VELOCITY_TOKEN),
        )
    )

    def quoted(items: list[str]) -> str:
        return ", ".join(f'"{i}"' for i in items)

    chain_ids = quoted([c.chain for c in chains])
    natives = quoted([c.native_asset for c in chains])
    tokens = quoted([c.token_asset.lower() for c in chains])
    approvers = quoted(list(APPROVERS))
    return f"""version = 1

{chain_tables}[caps]
{caps}
{velocity}[[rules]]
name = "sweeps to the treasury"
caller_role = "payments"
purpose = "SWEEP"
key_id = "hd:*"
chain = [{chain_ids}]
asset = [{natives}, {tokens}]
action = "allow"

[[rules]]
name = "gas funding of deposit addresses"
caller_role = "payments"
purpose = "GAS_FUNDING"
key_id = "hot-1"
chain = [{chain_ids}]
asset = [{natives}]
action = "allow"

[[rules]]
name = "nonce fills"
caller_role = "payments"
purpose = "NONCE_FILL"
key_id = "hot-1"
chain = [{chain_ids}]
asset = [{natives}]
action = "allow"

[[rules]]
name = "large token payouts"
caller_role = "payments"
purpose = ["PAYOUT", "REFUND"]
key_id = "hot-1"
chain = [{chain_ids}]
asset = [{tokens}]
amount_above = "{APPROVAL_ABOVE_TOKEN}"
action = "require_approvals"
approvers = [{approvers}]
threshold = 2

[[rules]]
name = "large native payouts"
caller_role = "payments"
purpose = ["PAYOUT", "REFUND"]
key_id = "hot-1"
chain = [{chain_ids}]
asset = [{natives}]
amount_above = "{APPROVAL_ABOVE_WEI}"
action = "require_approvals"
approvers = [{approvers}]
threshold = 2

[[rules]]
name = "payouts and refunds"
caller_role = "payments"
purpose = ["PAYOUT", "REFUND"]
key_id = "hot-1"
chain = [{chain_ids}]
asset = [{natives}, {tokens}]
action = "allow"
"""


@dataclass
class ChainStack:
    """One chain: its anvil node, its test token and its adapter process."""

    chain_id: int
    anvil: Anvil
    token: Token
    treasury: str
    customer: str
    adapter_port: int = 0
    adapter: ManagedProcess | None = None

    @property
    def chain(self) -> str:
        return f"eip155:{self.chain_id}"

    @property
    def token_asset(self) -> str:
        return f"{self.chain}/erc20:{self.token.address}"

    @property
    def native_asset(self) -> str:
        return f"{self.chain}/slip44:60"


@dataclass
class LocalStack:
    run_dir: Path
    chain_ids: tuple[int, ...] = (31337,)
    block_time_s: float | None = 1.0
    confirmations: int = 3
    postgres: PostgresCluster | None = None  # reuse a running cluster (tests)
    core_options: dict[str, object] = field(default_factory=dict)
    # Extra [chain] keys of one chain's adapter config, by chain id.
    adapter_options: dict[int, dict[str, object]] = field(default_factory=dict)
    velocity_window_s: int = VELOCITY_WINDOW_S
    # False: the core is configured without [signer] (no payouts or sweeps), as
    # start_all(signer=False) starts no signer; a core naming one waits for it at start.
    with_signer: bool = True

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, ManagedProcess] = {}
        self.chains: list[ChainStack] = []
        self._owns_postgres = self.postgres is None
        # GET /metrics of each process, by process name (signer, evm-<chain id>; the core's
        # is in core_setup()).
        self.metrics_ports: dict[str, int] = {}

    def _record_pid(self, pid: int) -> None:
        """Remembers a child so that a later run can clean up after a crash."""
        with open(self.run_dir / "pids", "a") as pids:
            pids.write(f"{pid}\n")

    # -- the first chain, for single-chain callers ---------------------------
    @property
    def primary(self) -> ChainStack:
        return self.chains[0]

    @property
    def anvil(self) -> Anvil:
        return self.primary.anvil

    @property
    def token(self) -> Token:
        return self.primary.token

    @property
    def customer(self) -> str:
        return self.primary.customer

    @property
    def treasury(self) -> str:
        return self.primary.treasury

    @property
    def chain(self) -> str:
        return self.primary.chain

    @property
    def token_asset(self) -> str:
        return self.primary.token_asset

    # -- infrastructure ---------------------------------------------------
    def start_infrastructure(self) -> None:
        if self.postgres is None:
            self.postgres = PostgresCluster(self.run_dir / "postgres")
            self.dsn = self.postgres.start()
        else:
            # A name never used before in this cluster: a port number is not
            # (the OS hands a freed port out again, and the session's cluster
            # keeps every stack's database).
            self.dsn = self.postgres.create_database(f"stack_{uuid.uuid4().hex[:16]}")
        self.hsm = SoftHsmToken(self.run_dir / "softhsm").init()
        for chain_id in self.chain_ids:
            anvil = Anvil(
                self.run_dir / f"anvil-{chain_id}",
                chain_id=chain_id,
                block_time_s=self.block_time_s,
            )
            anvil.start()
            assert anvil.process is not None
            self._record_pid(anvil.process.pid)
            accounts = anvil.accounts()
            token = deploy(anvil.rpc, accounts[0], "Test USD", "TUSD", 6)
            anvil.rpc.wait_receipt(token.mint(accounts[0], accounts[1], 1_000_000 * 10**6))
            self.chains.append(ChainStack(chain_id, anvil, token, accounts[0], accounts[1]))

    # -- signer -----------------------------------------------------------
    def _signer_env(self) -> dict[str, str]:
        return {**os.environ, **self.hsm.env}

    def signer_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [console_script("kassa-signer"), "--config", str(self.signer_config), *args],
            check=True,
            capture_output=True,
            text=True,
            env=self._signer_env(),
        )

    def policy_text(self) -> str:
        """The shipped signer policy (signer_policy) for this stack's chains."""
        return signer_policy(
            [PolicyChain(c.chain, c.token_asset, c.treasury) for c in self.chains],
            self.velocity_window_s,
        )

    def key_ceremony(self) -> str:
        self.signer_port = free_port()
        self.certs = self.run_dir / "certs"
        adapters = [a for c in self.chains for a in ("--adapter", c.chain)]
        subprocess.run(
            [str(REPO / "scripts" / "make-dev-certs"), str(self.certs), *adapters],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # The core's envelope key (Ed25519) and the approvers' keys.
        self.core_key = Ed25519PrivateKey.generate()
        self.core_key_file = self.run_dir / "core-signer.key"
        self.core_key_file.write_text(_raw_private(self.core_key) + "\n")
        self.core_key_file.chmod(0o600)
        self.approvers = {name: Ed25519PrivateKey.generate() for name in APPROVERS}
        self.signer_policy = self.run_dir / "signer-policy.toml"
        self.signer_policy.write_text(self.policy_text())
        self.signer_config = write_toml(
            self.run_dir / "signer.toml",
            {
                "server": {"listen": f"127.0.0.1:{self.signer_port}"},
                "metrics": {"listen": f"127.0.0.1:{self._metrics_port('signer')}"},
                "hsm": {
                    "module": str(self.hsm.module),
                    "token_label": self.hsm.label,
                    "pin_file": str(self.hsm.pin_file),
                },
                "state": {"dir": str(self.run_dir / "signer-state")},
                "tls": {
                    "ca_file": str(self.certs / "ca.pem"),
                    "cert_file": str(self.certs / "signer.pem"),
                    "key_file": str(self.certs / "signer.key"),
                },
                "policy": {"file": str(self.signer_policy)},
                "callers": [
                    {
                        "key_id": "core",
                        "role": "payments",
                        "tls_subject": "CN=kassa-core",
                        "ed25519_public_key": _raw_public(self.core_key),
                    }
                ],
                "approvers": [
                    {"key_id": name, "ed25519_public_key": _raw_public(key)}
                    for name, key in self.approvers.items()
                ],
            },
        )
        xpub_path = self.run_dir / "account.xpub"
        self.signer_command("keys", "init", "--xpub-out", str(xpub_path))
        self.account_xpub = xpub_path.read_text().strip()
        exported = self.signer_command("keys", "export-public", "--key-id", "hot-1").stdout
        self.hot_address = exported.strip().split("\t")[1].lower()
        for chain in self.chains:
            # The hot key's float: payouts leave from it (sweeps refill it in production).
            chain.anvil.rpc("anvil_setBalance", self.hot_address, hex(HOT_FLOAT_WEI))
            chain.anvil.rpc.wait_receipt(
                chain.token.transfer(chain.customer, self.hot_address, HOT_FLOAT_TOKEN)
            )
        return self.account_xpub

    def signer_channel(self) -> grpc.Channel:
        """A channel to the signer over mTLS, as the core (CN=kassa-core)."""
        credentials = grpc.ssl_channel_credentials(
            (self.certs / "ca.pem").read_bytes(),
            (self.certs / "core.key").read_bytes(),
            (self.certs / "core.pem").read_bytes(),
        )
        return grpc.secure_channel(f"localhost:{self.signer_port}", credentials)

    def _metrics_port(self, name: str) -> int:
        if name not in self.metrics_ports:
            self.metrics_ports[name] = free_port()
        return self.metrics_ports[name]

    # -- processes ----------------------------------------------------------
    def _start(self, name: str, process: ManagedProcess) -> ManagedProcess:
        self.processes[name] = process.start()
        self._record_pid(process.pid)
        return process

    def start_signer(self) -> ManagedProcess:
        return self._start(
            "signer",
            ManagedProcess(
                "signer",
                [console_script("kassa-signer"), "--config", str(self.signer_config), "serve"],
                self.run_dir / "signer.log",
                port=self.signer_port,
                env=self.hsm.env,
            ),
        )

    def start_adapter(self, chain: ChainStack | None = None) -> ManagedProcess:
        chain = chain or self.primary
        if not chain.adapter_port:
            chain.adapter_port = free_port()
        config = write_toml(
            self.run_dir / f"evm-{chain.chain_id}.toml",
            {
                # Mutual TLS: its own identity, and only the core (CN=kassa-core) may call.
                "server": {
                    "listen": f"127.0.0.1:{chain.adapter_port}",
                    "cert_file": str(self.certs / f"adapter-{chain.chain.replace(':', '-')}.pem"),
                    "key_file": str(self.certs / f"adapter-{chain.chain.replace(':', '-')}.key"),
                    "client_ca_file": str(self.certs / "ca.pem"),
                    "allowed_callers": ["CN=kassa-core"],
                },
                "metrics": {"listen": f"127.0.0.1:{self._metrics_port(f'evm-{chain.chain_id}')}"},
                "chain": {
                    "chain_id": chain.chain_id,
                    "node_urls": [chain.anvil.ws_url],
                    "tokens": [chain.token.address],
                    **self.adapter_options.get(chain.chain_id, {}),
                },
            },
        )
        chain.adapter = self._start(
            f"evm-{chain.chain_id}",
            ManagedProcess(
                f"evm-adapter-{chain.chain_id}",
                [console_script("kassa-evm"), "--config", str(config)],
                self.run_dir / f"evm-{chain.chain_id}.log",
                port=chain.adapter_port,
            ),
        )
        return chain.adapter

    def core_setup(self) -> CoreSetup:
        if not hasattr(self, "_core_setup"):
            chains: list[dict[str, object]] = []
            assets: list[dict[str, object]] = []
            for c in self.chains:
                chains.append(
                    {
                        "id": c.chain,
                        "adapter": f"127.0.0.1:{c.adapter_port}",
                        "confirmations": self.confirmations,
                    }
                )
                assets.append({"id": c.token_asset, "symbol": "TUSD", "decimals": 6})
                assets.append({"id": c.native_asset, "symbol": "ETH", "decimals": 18})
            self._core_setup = CoreSetup(
                run_dir=self.run_dir,
                dsn=self.dsn,
                account_xpub=self.account_xpub,
                chains=chains,
                assets=assets,
                fixed_rates={"TUSD/USD": "1.00", "ETH/USD": "3000.00"},
                certs=self.certs,
                signer={
                    "target": f"localhost:{self.signer_port}",
                    "ca_file": str(self.certs / "ca.pem"),
                    "cert_file": str(self.certs / "core.pem"),
                    "key_file": str(self.certs / "core.key"),
                    "caller_key_id": "core",
                    "caller_key_file": str(self.core_key_file),
                    # A stopped signer shows in the core's health within a second or two.
                    "health_interval_s": 1.0,
                }
                if self.with_signer
                else None,
                # Quick enough for tests and the demo to see a stuck transaction replaced.
                payouts={"replace_after_s": 4, "poll_interval_s": 0.2}
                if self.with_signer
                else None,
                # Deposit sweeps to each chain's treasury, on demand only
                # (SweepService.RunSweeps): a timer would spend hot-key nonces
                # under tests that count them.
                sweeps={
                    "enabled": True,
                    "interval_s": 0,
                    "treasury": {c.chain: c.treasury for c in self.chains},
                }
                if self.with_signer
                else None,
                **self.core_options,  # type: ignore[arg-type]
            )
        return self._core_setup

    def migrate(self) -> str:
        config = self.core_setup().write_config()
        return subprocess.run(
            [console_script("kassa-core"), "--config", str(config), "migrate"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def start_core(self) -> ManagedProcess:
        """Starts the core and waits until it follows every chain (health "" SERVING)."""
        process = self._start("core", self.core_setup().process())
        self.core_setup().wait_serving()
        return process

    def start_all(self, signer: bool = True) -> None:
        self.start_infrastructure()
        self.key_ceremony()
        self.with_signer = signer
        if signer:
            self.start_signer()
        for chain in self.chains:
            self.start_adapter(chain)
        self.migrate()
        self.start_core()

    def stop(self) -> dict[str, int | None]:
        """Stops Kassa's processes (SIGTERM), then anvil and PostgreSQL; returns exit codes."""
        codes: dict[str, int | None] = {}
        for name in ["core", *[n for n in self.processes if n.startswith("evm-")], "signer"]:
            if name in self.processes:
                codes[name] = self.processes.pop(name).stop()
        for chain in self.chains:
            chain.anvil.stop()
        if self._owns_postgres and self.postgres is not None:
            self.postgres.stop()
        return codes
