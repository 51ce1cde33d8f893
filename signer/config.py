"""The signer's TOML configuration, with defaults good enough for a local stack.

The PIN never comes from the command line (it would show in `ps`): it is read
from a file or an environment variable named here.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer.config_schema import SchemaError, SignerToml, check

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_PIN_ENV = "KASSA_HSM_PIN"


class ConfigError(Exception):
    """Bad configuration; the message is one line an operator can act on."""


MAX_WORKERS = 64


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50061"
    grace_s: float = 5.0
    # Worker processes serving one listen address (SO_REUSEPORT), each with its own HSM session
    # and thread; they share the state file (request-id guard, velocity, one audit chain).
    workers: int = 1
    # Plaintext gRPC is accepted only with this set AND a loopback listen address (dev, tests).
    insecure_loopback_only: bool = False

    @property
    def loopback(self) -> bool:
        host = self.listen.rpartition(":")[0].strip("[]")
        return host in {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class TlsConfig:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class RequestLimits:
    # A signed request is good for at most max_lifetime_s, and clocks may differ by max_skew_s.
    max_lifetime_s: int = 60
    max_skew_s: int = 30


@dataclass(frozen=True)
class HsmConfig:
    module: str = DEFAULT_MODULE
    token_label: str = "kassa"
    pin_file: Path | None = None
    pin_env: str | None = None

    def read_pin(self) -> str:
        if self.pin_file is not None:
            try:
                mode = self.pin_file.stat().st_mode
            except OSError as exc:
                raise ConfigError(f"hsm.pin_file {self.pin_file}: {exc.strerror}") from None
            if mode & 0o077:
                # Anyone else on the host who can read the PIN can use every key in the token.
                raise ConfigError(
                    f"hsm.pin_file {self.pin_file} is readable by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
                )
            try:
                pin = self.pin_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"hsm.pin_file {self.pin_file}: {exc.strerror}") from None
            if not pin:
                raise ConfigError(f"hsm.pin_file {self.pin_file} is empty")
            return pin
        name = self.pin_env or DEFAULT_PIN_ENV
        pin = os.environ.get(name, "")
        if not pin:
            raise ConfigError(f"the HSM PIN environment variable {name} is not set (hsm.pin_env)")
        return pin


@dataclass(frozen=True)
class CallerConfig:
    key_id: str
    ed25519_public_key: bytes
    role: str = ""
    # The mTLS client certificate subject this caller must connect with, e.g. "CN=kassa-core".
    tls_subject: str | None = None


@dataclass(frozen=True)
class ApproverConfig:
    key_id: str
    ed25519_public_key: bytes


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    hsm: HsmConfig = field(default_factory=HsmConfig)
    state_dir: Path = Path("signer-state")
    log_level: str = "info"
    callers: tuple[CallerConfig, ...] = ()
    approvers: tuple[ApproverConfig, ...] = ()
    tls: TlsConfig | None = None
    policy_file: Path | None = None
    limits: RequestLimits = field(default_factory=RequestLimits)
    # [metrics] listen: host:port of GET /metrics (Prometheus); None: no endpoint.
    metrics_listen: str | None = None

    @property
    def seed_path(self) -> Path:
        return self.state_dir / "hd-seed.json"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "signer.sqlite3"

    def check_serveable(self) -> None:
        """What `serve` needs beyond what key commands need."""
        if self.policy_file is None:
            raise ConfigError("policy.file is required to serve (the signing policy)")
        if self.tls is None and not (self.server.insecure_loopback_only and self.server.loopback):
            raise ConfigError(
                "[tls] is required; plaintext is allowed only with "
                "server.insecure_loopback_only = true on a loopback listen address"
            )
        if self.tls is not None:
            unbound = [c.key_id for c in self.callers if c.tls_subject is None]
            if unbound:
                raise ConfigError(f"callers {unbound[0]!r}: tls_subject is required with [tls]")


def load(path: Path | None) -> Config:
    """Reads path (None: defaults only); relative paths are relative to the file."""
    if path is None:
        return parse({}, Path.cwd())
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    return parse(raw, path.resolve().parent, path)


def parse(raw: dict[str, Any], base_dir: Path, source: Path | str = "signer.toml") -> Config:
    """Checks `raw` against signer/config_schema.py (unknown keys, types), then its meaning."""
    if isinstance(raw.get("hsm"), dict) and "pin" in raw["hsm"]:
        raise ConfigError("hsm.pin is not accepted: use hsm.pin_file or hsm.pin_env")
    try:
        check(raw, SignerToml, source)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from None
    server = raw.get("server", {})
    hsm = raw.get("hsm", {})
    state = raw.get("state", {})
    log = raw.get("log", {})

    listen = _str(server, "server", "listen", ServerConfig.listen)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"server.listen must be host:port, got {listen!r}")
    grace_s = server.get("grace_s", ServerConfig.grace_s)
    if not isinstance(grace_s, int | float) or isinstance(grace_s, bool) or grace_s < 0:
        raise ConfigError("server.grace_s must be a non-negative number of seconds")

    workers = server.get("workers", ServerConfig.workers)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"server.workers must be an integer in 1..{MAX_WORKERS}")

    pin_file = hsm.get("pin_file")
    pin_env = hsm.get("pin_env")
    if pin_file is not None and pin_env is not None:
        raise ConfigError("set only one of hsm.pin_file and hsm.pin_env")
    insecure = server.get("insecure_loopback_only", False)
    if not isinstance(insecure, bool):
        raise ConfigError("server.insecure_loopback_only must be true or false")
    tls = raw.get("tls")
    policy = raw.get("policy", {})
    requests = raw.get("requests", {})
    level = _str(log, "log", "level", "info").lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"log.level must be debug, info, warning or error, got {level!r}")
    metrics_listen = raw.get("metrics", {}).get("listen")
    if metrics_listen is not None:
        m_host, _, m_port = _str(raw["metrics"], "metrics", "listen", "").rpartition(":")
        if not m_host or not m_port.isdigit() or not 0 < int(m_port) < 65536:
            raise ConfigError(f"metrics.listen must be host:port, got {metrics_listen!r}")
    return Config(
        server=ServerConfig(
            listen=listen,
            grace_s=float(grace_s),
            insecure_loopback_only=insecure,
            workers=workers,
        ),
        hsm=HsmConfig(
            module=_str(hsm, "hsm", "module", DEFAULT_MODULE),
            token_label=_str(hsm, "hsm", "token_label", "kassa"),
            pin_file=None if pin_file is None else base_dir / _str(hsm, "hsm", "pin_file", ""),
            pin_env=None if pin_env is None else _str(hsm, "hsm", "pin_env", ""),
        ),
        state_dir=base_dir / _str(state, "state", "dir", "signer-state"),
        log_level=level,
        metrics_listen=metrics_listen,
        callers=_callers(raw.get("callers", [])),
        approvers=_approvers(raw.get("approvers", [])),
        tls=None
        if tls is None
        else TlsConfig(
            **{k: base_dir / _str(tls, "tls", k, "") for k in ("ca_file", "cert_file", "key_file")}
        ),
        policy_file=None if "file" not in policy else base_dir / _str(policy, "policy", "file", ""),
        limits=RequestLimits(
            max_lifetime_s=_seconds(requests, "max_lifetime_s", 60, 60),
            max_skew_s=_seconds(requests, "max_skew_s", 30, 300),
        ),
    )


def _seconds(table: dict[str, Any], key: str, default: int, most: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= most:
        raise ConfigError(f"requests.{key} must be an integer number of seconds in 1..{most}")
    return value


def _str(table: dict[str, Any], section: str, key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{section}.{key} must be a non-empty string")
    return value


def _ed25519_key(entry: dict[str, Any], table: str) -> bytes:
    try:
        public_key = bytes.fromhex(entry["ed25519_public_key"])
    except (TypeError, ValueError):
        public_key = b""
    if len(public_key) != 32:
        raise ConfigError(f"{table} {entry['key_id']!r}: ed25519_public_key must be 64 hex chars")
    return public_key


def _entries(raw: Any, table: str, required: set[str], optional: set[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise ConfigError(f"{table} must be an array of tables: [[{table}]]")
    for entry in raw:
        if not isinstance(entry, dict) or not required <= set(entry) <= required | optional:
            raise ConfigError(
                f"each [[{table}]] needs {', '.join(sorted(required))}"
                + (f" (optional: {', '.join(sorted(optional))})" if optional else "")
            )
        for key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise ConfigError(f"{table}.{key} must be a non-empty string")
    if len({e["key_id"] for e in raw}) != len(raw):
        raise ConfigError(f"{table}: duplicate key_id")
    return raw


def _callers(raw: Any) -> tuple[CallerConfig, ...]:
    entries = _entries(raw, "callers", {"key_id", "ed25519_public_key", "role"}, {"tls_subject"})
    return tuple(
        CallerConfig(
            key_id=e["key_id"],
            ed25519_public_key=_ed25519_key(e, "callers"),
            role=e["role"],
            tls_subject=e.get("tls_subject"),
        )
        for e in entries
    )


def _approvers(raw: Any) -> tuple[ApproverConfig, ...]:
    entries = _entries(raw, "approvers", {"key_id", "ed25519_public_key"}, set())
    return tuple(
        ApproverConfig(key_id=e["key_id"], ed25519_public_key=_ed25519_key(e, "approvers"))
        for e in entries
    )
