"""Configuration files and process handles for Kassa's three processes.

The demo and the end-to-end tests build the same stack from these pieces.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.clients import ApiTls, api_channel, authed_channel
from core.webhooks.sealing import new_kek_line
from kassa.core.v1 import merchant_pb2, merchant_pb2_grpc
from localstack import devcerts
from localstack.ports import free_port
from localstack.procs import ManagedProcess, console_script


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        # An inline table, e.g. a confirmation tier inside a list.
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"cannot write {value!r} as TOML")


def write_toml(path: Path, tables: dict[str, dict[str, object] | list[dict[str, object]]]) -> Path:
    """Writes tables ({"server": {...}}) and arrays of tables ({"chains": [{...}]})."""
    lines: list[str] = []
    for name, body in tables.items():
        entries = body if isinstance(body, list) else [body]
        for entry in entries:
            lines.append(f"[[{name}]]" if isinstance(body, list) else f"[{name}]")
            for key, value in entry.items():
                if isinstance(value, dict):
                    continue
                lines.append(f"{json.dumps(key) if '/' in key else key} = {_toml_value(value)}")
            lines.append("")
            for key, value in entry.items():
                if isinstance(value, dict):
                    lines.append(f"[{name}.{key}]")
                    lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()]
                    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


MERCHANT_SCOPES = ("invoices:read", "invoices:write", "invoices:mark", "events:read")


@dataclass
class CoreSetup:
    run_dir: Path
    dsn: str
    account_xpub: str
    chains: list[dict[str, object]]
    assets: list[dict[str, object]]
    fixed_rates: dict[str, str]
    port: int = 0
    default_ttl_s: int = 900
    underpayment_tolerance_bps: int = 0
    late_payment_window_s: int = 3600
    # [webhooks] and [events] tables (retry schedule, private targets, stream buffers).
    webhooks: dict[str, object] | None = None
    events: dict[str, object] | None = None
    # [signer] (target, TLS files, caller key) and [payouts]; None: payouts off.
    signer: dict[str, object] | None = None
    payouts: dict[str, object] | None = None
    # [sweeps] (enabled, treasury per chain, interval); None: no sweeps.
    sweeps: dict[str, object] | None = None
    # [support] table (second approval, stuck and failing thresholds); None: defaults.
    support: dict[str, object] | None = None
    # Keys merged into every [[chains]] entry (e.g. tiers, pending_ttl_s).
    chain_extra: dict[str, object] | None = None
    # Extra environment of the core process (e.g. KASSA_FAULT in tests).
    env: dict[str, str] | None = None
    # GET /metrics of the core (Prometheus).
    metrics_port: int = 0
    # [health] (interval, staleness, invoices_need_chain).
    health: dict[str, object] | None = None
    # Certificates of scripts/make-dev-certs (the stack's); None: made under run_dir/certs.
    certs: Path | None = None
    # The API asks for a client certificate from the certs' CA (in addition to API keys).
    client_certificates: bool = False
    # The database password, kept in a file of mode 0600 (database.password_file).
    db_password_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()
        if not self.metrics_port:
            self.metrics_port = free_port()
        if self.certs is None:
            self.certs = self.run_dir / "certs"
            if not (self.certs / "ca.pem").exists():
                chains = [str(c["id"]) for c in self.chains]
                devcerts.make(self.certs, adapters=chains or devcerts.DEFAULT_ADAPTERS)
        # The key-encryption key of webhook secrets, private to its owner like every secret.
        self.kek_file = self.run_dir / "webhook-kek"
        if not self.kek_file.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.kek_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new_kek_line("dev-1") + "\n")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        assert self.certs is not None
        return self.certs / "ca.pem"

    def api_tls(self, client_certificate: bool | None = None) -> ApiTls:
        """How a client reaches this core: its CA (and the client certificate, if asked)."""
        assert self.certs is not None
        with_cert = self.client_certificates if client_certificate is None else client_certificate
        return ApiTls.from_files(
            self.ca_file,
            cert_file=self.certs / "client.pem" if with_cert else None,
            key_file=self.certs / "client.key" if with_cert else None,
        )

    def bare_channel(self) -> grpc.Channel:
        """A TLS channel to the API without an API key."""
        return api_channel(self.target, self.api_tls())

    def tls_tables(self) -> dict[str, dict[str, object]]:
        assert self.certs is not None
        server: dict[str, object] = {
            "listen": self.target,
            "cert_file": str(self.certs / "core-api.pem"),
            "key_file": str(self.certs / "core-api.key"),
        }
        if self.client_certificates:
            server["client_ca_file"] = str(self.ca_file)
        return {
            "server": server,
            "adapters": {
                "ca_file": str(self.ca_file),
                "cert_file": str(self.certs / "core.pem"),
                "key_file": str(self.certs / "core.key"),
            },
            "secrets": {"webhook_kek_file": str(self.kek_file)},
        }

    def write_config(self) -> Path:
        return write_toml(
            self.run_dir / "core.toml",
            {
                **self.tls_tables(),
                "database": {
                    "dsn": self.dsn,
                    **(
                        {"password_file": str(self.db_password_file)}
                        if self.db_password_file
                        else {}
                    ),
                },
                "hd": {"account_xpub": self.account_xpub},
                "invoices": {
                    "default_ttl_s": self.default_ttl_s,
                    "expiry_interval_s": 0.2,
                    "underpayment_tolerance_bps": self.underpayment_tolerance_bps,
                    "late_payment_window_s": self.late_payment_window_s,
                },
                "auth": {"key_cache_s": 0.2},
                "metrics": {"listen": f"127.0.0.1:{self.metrics_port}", "interval_s": 0.5},
                "chains": [{**c, **(self.chain_extra or {})} for c in self.chains],
                "assets": self.assets,
                "rates": {"fixed": self.fixed_rates},
                **({"webhooks": self.webhooks} if self.webhooks else {}),
                **({"events": self.events} if self.events else {}),
                **({"signer": self.signer} if self.signer else {}),
                **({"payouts": self.payouts} if self.payouts else {}),
                **({"sweeps": self.sweeps} if self.sweeps else {}),
                **({"support": self.support} if self.support else {}),
                **({"health": self.health} if self.health else {}),
            },
        )

    def admin_token(self) -> str:
        """A platform key with every scope, bootstrapped with database access."""
        if not hasattr(self, "_admin_token"):
            result = subprocess.run(
                [console_script("kassactl"), "bootstrap-key", "--dsn", self.dsn],
                check=True,
                capture_output=True,
                text=True,
            )
            self._admin_token = result.stdout.strip().splitlines()[-1]
        return self._admin_token

    def merchant_token(self, merchant_id: str, scopes: tuple[str, ...] = MERCHANT_SCOPES) -> str:
        """Creates the merchant (once) and returns a new API key of it (the core must run)."""
        with authed_channel(self.target, self.admin_token(), self.api_tls()) as channel:
            stub = merchant_pb2_grpc.MerchantServiceStub(channel)
            try:
                stub.CreateMerchant(
                    merchant_pb2.CreateMerchantRequest(
                        merchant_id=merchant_id, display_name=merchant_id.title()
                    )
                )
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:  # type: ignore[attr-defined]
                    raise
            created = stub.CreateApiKey(
                merchant_pb2.CreateApiKeyRequest(
                    parent=f"merchants/{merchant_id}", scopes=list(scopes), description="localstack"
                )
            )
        return str(created.secret)

    def channel(self, token: str) -> grpc.Channel:
        return authed_channel(self.target, token, self.api_tls())

    def wait_serving(self, service: str = "", timeout_s: float = 60.0) -> None:
        """Waits until the core's grpc.health.v1 reports `service` SERVING ("" the whole
        core: the database answers and every chain is followed)."""
        deadline = time.monotonic() + timeout_s
        status = None
        with self.bare_channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"core health {service!r} not SERVING after {timeout_s}s: {status}")

    def process(self) -> ManagedProcess:
        config = self.write_config()
        return ManagedProcess(
            "core",
            # --migrate: test databases start empty; production runs `migrate` on its own.
            [console_script("kassa-core"), "--config", str(config), "serve", "--migrate"],
            self.run_dir / "core.log",
            port=self.port,
            env=dict(self.env or {}),
        )
