"""Configuration files and process handles for Kassa's three processes.

The demo and the end-to-end tests build the same stack from these pieces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        return write_toml(
            self.run_dir / "core.toml",
            {
                "server": {"listen": self.target},
                "database": {"dsn": self.dsn},
                "hd": {"account_xpub": self.account_xpub},
                "invoices": {"default_ttl_s": self.default_ttl_s, "expiry_interval_s": 0.2},
                "chains": self.chains,
                "assets": self.assets,
                "rates": {"fixed": self.fixed_rates},
            },
        )

    def process(self) -> ManagedProcess:
        config = self.write_config()
        return ManagedProcess(
            "core",
            [console_script("kassa-core"), "--config", str(config), "serve"],
            self.run_dir / "core.log",
            port=self.port,
        )
