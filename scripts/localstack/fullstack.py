"""The whole local stack: PostgreSQL, SoftHSM2, one anvil node and test token
per chain, then Kassa's signer, one EVM adapter per chain and the core as
separate processes.

Used by scripts/demo and the end-to-end tests; everything lives under one
run directory.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from localstack.anvil import Anvil
from localstack.ports import free_port
from localstack.postgres import PostgresCluster
from localstack.procs import ManagedProcess, console_script
from localstack.softhsm import SoftHsmToken
from localstack.stack import CoreSetup, write_toml
from localstack.token import Token, deploy

MERCHANT = "merchants/demo"


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
    core_options: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, ManagedProcess] = {}
        self.chains: list[ChainStack] = []
        self._owns_postgres = self.postgres is None

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
            self.dsn = self.postgres.create_database(f"stack_{free_port()}")
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

    def key_ceremony(self) -> str:
        self.signer_port = free_port()
        self.signer_policy = self.run_dir / "signer-policy.toml"
        # Implicit deny: the walking skeleton signs nothing; payouts bring rules.
        self.signer_policy.write_text(
            "# Kassa signer policy: no rule matches, so every request is refused.\n"
        )
        self.signer_config = write_toml(
            self.run_dir / "signer.toml",
            {
                "server": {
                    "listen": f"127.0.0.1:{self.signer_port}",
                    "insecure_loopback_only": True,
                },
                "hsm": {
                    "module": str(self.hsm.module),
                    "token_label": self.hsm.label,
                    "pin_file": str(self.hsm.pin_file),
                },
                "state": {"dir": str(self.run_dir / "signer-state")},
                "policy": {"file": str(self.signer_policy)},
            },
        )
        xpub_path = self.run_dir / "account.xpub"
        self.signer_command("keys", "init", "--xpub-out", str(xpub_path))
        self.account_xpub = xpub_path.read_text().strip()
        return self.account_xpub

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
                "server": {"listen": f"127.0.0.1:{chain.adapter_port}"},
                "chain": {
                    "chain_id": chain.chain_id,
                    "node_urls": [chain.anvil.ws_url],
                    "tokens": [chain.token.address],
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
        return self._start("core", self.core_setup().process())

    def start_all(self, signer: bool = True) -> None:
        self.start_infrastructure()
        self.key_ceremony()
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
