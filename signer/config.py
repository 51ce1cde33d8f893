"""The signer's TOML configuration, with defaults good enough for a local stack.

The PIN never comes from the command line (it would show in `ps`): it is read
from a file or an environment variable named here.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_PIN_ENV = "KASSA_HSM_PIN"


class ConfigError(Exception):
    """Bad configuration; the message is one line an operator can act on."""


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50061"
    grace_s: float = 5.0


@dataclass(frozen=True)
class HsmConfig:
    module: str = DEFAULT_MODULE
    token_label: str = "kassa"
    pin_file: Path | None = None
    pin_env: str | None = None

    def read_pin(self) -> str:
        if self.pin_file is not None:
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


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    hsm: HsmConfig = field(default_factory=HsmConfig)
    state_dir: Path = Path("signer-state")
    log_level: str = "info"
    callers: tuple[CallerConfig, ...] = ()

    @property
    def seed_path(self) -> Path:
        return self.state_dir / "hd-seed.json"


_SECTIONS = {
    "server": {"listen", "grace_s"},
    "hsm": {"module", "token_label", "pin_file", "pin_env"},
    "state": {"dir"},
    "log": {"level"},
    "callers": set(),
}


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
    return parse(raw, path.resolve().parent)


def parse(raw: dict[str, Any], base_dir: Path) -> Config:
    if isinstance(raw.get("hsm"), dict) and "pin" in raw["hsm"]:
        raise ConfigError("hsm.pin is not accepted: use hsm.pin_file or hsm.pin_env")
    for section, value in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section [{section}]")
        if section != "callers":
            if not isinstance(value, dict):
                raise ConfigError(f"[{section}] must be a table")
            unknown = set(value) - _SECTIONS[section]
            if unknown:
                raise ConfigError(f"unknown key {section}.{sorted(unknown)[0]}")
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

    pin_file = hsm.get("pin_file")
    pin_env = hsm.get("pin_env")
    if pin_file is not None and pin_env is not None:
        raise ConfigError("set only one of hsm.pin_file and hsm.pin_env")
    level = _str(log, "log", "level", "info").lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"log.level must be debug, info, warning or error, got {level!r}")
    return Config(
        server=ServerConfig(listen=listen, grace_s=float(grace_s)),
        hsm=HsmConfig(
            module=_str(hsm, "hsm", "module", DEFAULT_MODULE),
            token_label=_str(hsm, "hsm", "token_label", "kassa"),
            pin_file=None if pin_file is None else base_dir / _str(hsm, "hsm", "pin_file", ""),
            pin_env=None if pin_env is None else _str(hsm, "hsm", "pin_env", ""),
        ),
        state_dir=base_dir / _str(state, "state", "dir", "signer-state"),
        log_level=level,
        callers=_callers(raw.get("callers", [])),
    )


def _str(table: dict[str, Any], section: str, key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{section}.{key} must be a non-empty string")
    return value


def _callers(raw: Any) -> tuple[CallerConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("callers must be an array of tables: [[callers]]")
    callers = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) != {"key_id", "ed25519_public_key"}:
            raise ConfigError("each [[callers]] needs exactly key_id and ed25519_public_key")
        try:
            public_key = bytes.fromhex(entry["ed25519_public_key"])
        except (TypeError, ValueError):
            public_key = b""
        if len(public_key) != 32:
            raise ConfigError(f"callers {entry['key_id']!r}: ed25519_public_key must be 64 hex chars")
        callers.append(CallerConfig(key_id=str(entry["key_id"]), ed25519_public_key=public_key))
    if len({c.key_id for c in callers}) != len(callers):
        raise ConfigError("callers: duplicate key_id")
    return tuple(callers)
