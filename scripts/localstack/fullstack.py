"""The whole local stack: PostgreSQL, SoftHSM2, anvil and a test token, then
Kassa's signer, EVM adapter and core as separate processes.

Used by scripts/demo and the end-to-end tests; everything lives under one
run directory.
"""

from __future__ import annotations

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
class LocalStack:
    run_dir: Path
    chain_id: int = 31337
    block_time_s: float | None = 1.0
    confirmations: int = 3
    postgres: PostgresCluster | None = None  # reuse a running cluster (tests)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, ManagedProcess] = {}
        self._owns_postgres = self.postgres is None

    def _record_pid(self, pid: int) -> None:
        """Remembers a child so that a later run can clean up after a crash."""
        with open(self.run_dir / "pids", "a") as pids:
            pids.write(f"{pid}\n")

    # -- infrastructure ---------------------------------------------------
    def start_infrastructure(self) -> None:
        if self.postgres is None:
            self.postgres = PostgresCluster(self.run_dir / "postgres")
            self.dsn = self.postgres.start()
        else:
            self.dsn = self.postgres.create_database(f"stack_{free_port()}")
        self.hsm = SoftHsmToken(self.run_dir / "softhsm").init()
        self.anvil = Anvil(
            self.run_dir / "anvil", chain_id=self.chain_id, block_time_s=self.block_time_s
        ).start()
        assert self.anvil.process is not None
        self._record_pid(self.anvil.process.pid)
        accounts = self.anvil.accounts()
        self.treasury, self.customer = accounts[0], accounts[1]
        self.token: Token = deploy(self.anvil.rpc, self.treasury, "Test USD", "TUSD", 6)
        self.anvil.rpc.wait_receipt(
            self.token.mint(self.treasury, self.customer, 1_000_000 * 10**6)
        )

    @property
    def chain(self) -> str:
        return f"eip155:{self.chain_id}"

    @property
    def token_asset(self) -> str:
        return f"{self.chain}/erc20:{self.token.address}"

    # -- signer -----------------------------------------------------------
    def signer_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [console_script("kassa-signer"), "--config", str(self.signer_config), *args],
            check=True,
            capture_output=True,
            text=True,
            env=self._env(),
        )

    def _env(self) -> dict[str, str]:
        import os

        return {**os.environ, **self.hsm.env}

    def key_ceremony(self) -> str:
        self.signer_port = free_port()
        self.signer_config = write_toml(
            self.run_dir / "signer.toml",
            {
                "server": {"listen": f"127.0.0.1:{self.signer_port}"},
                "hsm": {
                    "module": str(self.hsm.module),
                    "token_label": self.hsm.label,
                    "pin_file": str(self.hsm.pin_file),
                },
                "state": {"dir": str(self.run_dir / "signer-state")},
            },
        )
        xpub_path = self.run_dir / "account.xpub"
        self.signer_command("keys", "init", "--xpub-out", str(xpub_path))
        self.account_xpub = xpub_path.read_text().strip()
        return self.account_xpub

    # -- processes ----------------------------------------------------------
    def start_signer(self) -> ManagedProcess:
        process = ManagedProcess(
            "signer",
            [console_script("kassa-signer"), "--config", str(self.signer_config), "serve"],
            self.run_dir / "signer.log",
            port=self.signer_port,
            env=self.hsm.env,
        )
        self.processes["signer"] = process.start()
        self._record_pid(process.pid)
        return process

    def start_adapter(self) -> ManagedProcess:
        self.adapter_port = free_port()
        config = write_toml(
            self.run_dir / "evm.toml",
            {
                "server": {"listen": f"127.0.0.1:{self.adapter_port}"},
                "chain": {
                    "chain_id": self.chain_id,
                    "node_urls": [self.anvil.ws_url],
                    "tokens": [self.token.address],
                },
            },
        )
        process = ManagedProcess(
            "evm-adapter",
            [console_script("kassa-evm"), "--config", str(config)],
            self.run_dir / "evm.log",
            port=self.adapter_port,
        )
        self.processes["evm-adapter"] = process.start()
        self._record_pid(process.pid)
        return process

    def core_setup(self) -> CoreSetup:
        if not hasattr(self, "_core_setup"):
            self._core_setup = CoreSetup(
                run_dir=self.run_dir,
                dsn=self.dsn,
                account_xpub=self.account_xpub,
                chains=[
                    {
                        "id": self.chain,
                        "adapter": f"127.0.0.1:{self.adapter_port}",
                        "confirmations": self.confirmations,
                    }
                ],
                assets=[
                    {"id": self.token_asset, "symbol": "TUSD", "decimals": 6},
                    {"id": f"{self.chain}/slip44:60", "symbol": "ETH", "decimals": 18},
                ],
                fixed_rates={"TUSD/USD": "1.00", "ETH/USD": "3000.00"},
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
        process = self.core_setup().process()
        self.processes["core"] = process.start()
        self._record_pid(process.pid)
        return process

    def start_all(self) -> None:
        self.start_infrastructure()
        self.key_ceremony()
        self.start_signer()
        self.start_adapter()
        self.migrate()
        self.start_core()

    def stop(self) -> dict[str, int | None]:
        """Stops Kassa's processes (SIGTERM), then anvil and PostgreSQL; returns exit codes."""
        codes: dict[str, int | None] = {}
        for name in ("core", "evm-adapter", "signer"):
            if name in self.processes:
                codes[name] = self.processes.pop(name).stop()
        if hasattr(self, "anvil"):
            self.anvil.stop()
        if self._owns_postgres and self.postgres is not None:
            self.postgres.stop()
        return codes
