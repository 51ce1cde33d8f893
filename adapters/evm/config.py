"""The adapter's TOML configuration, with embedded defaults and strict checks.

A bad file is refused before anything starts, with a message naming the key,
so an operator never discovers a typo as a silent default at run time.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.evm.config_schema import EvmToml, SchemaError, check
from adapters.evm.secretfiles import SecretFileError, read_secret_file
from adapters.evm.traces import TraceMethod

DEFAULT_LISTEN = "127.0.0.1:50071"
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
DEFAULT_POLL_INTERVAL_S = 1.0
DEFAULT_REORG_WINDOW_BLOCKS = 256
DEFAULT_REQUEST_TIMEOUT_S = 30.0

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_KNOWN = {
    "server": {
        "listen",
        "cert_file",
        "key_file",
        "client_ca_file",
        "allowed_callers",
        "dev_plaintext",
    },
    "metrics": {"listen"},
    "log": {"level"},
    "chain": {
        "chain_id",
        "node_urls",
        "node_urls_file",
        "node_urls_env",
        "tokens",
        "heartbeat_interval_s",
        "poll_interval_s",
        "reorg_window_blocks",
        "request_timeout_s",
        "internal_transfers",
    },
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class TlsFiles:
    """[server] mutual TLS: our certificate and key, the CA of callers' certificates,
    and the certificate subjects allowed to call (the core's: "CN=kassa-core")."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path
    allowed_callers: tuple[str, ...]


DEFAULT_ALLOWED_CALLERS = ("CN=kassa-core",)


@dataclass(frozen=True)
class Config:
    listen: str
    chain_id: int
    node_urls: tuple[str, ...]
    tokens: tuple[str, ...]  # lowercase 0x addresses
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    reorg_window_blocks: int = DEFAULT_REORG_WINDOW_BLOCKS
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    # [metrics] listen: host:port of GET /metrics (Prometheus); None: no endpoint.
    metrics_listen: str | None = None
    # [log] level: the lowest level written (the schema allows only the four names).
    log_level: str = "info"
    # Native value moved inside contract calls, from the node's call traces.
    internal_transfers: TraceMethod = TraceMethod.OFF
    # None only with server.dev_plaintext = true: then anyone who reaches the port is served.
    tls: TlsFiles | None = None


def _tls(server: dict[str, Any], base: Path) -> TlsFiles | None:
    files = ("cert_file", "key_file", "client_ca_file")
    if server.get("dev_plaintext", False) is True:
        if any(k in server for k in (*files, "allowed_callers")):
            raise ConfigError("server.dev_plaintext = true and TLS settings: choose one")
        return None
    missing = [k for k in files if not isinstance(server.get(k), str) or not server.get(k)]
    if missing:
        raise ConfigError(
            f"server.{', server.'.join(missing)} required: the adapter serves over mutual TLS "
            "(server.dev_plaintext = true only for local development)"
        )
    callers = server.get("allowed_callers", list(DEFAULT_ALLOWED_CALLERS))
    if (
        not isinstance(callers, list)
        or not callers
        or not all(isinstance(c, str) and c for c in callers)
    ):
        raise ConfigError('server.allowed_callers must list certificate subjects ("CN=kassa-core")')
    return TlsFiles(
        base / server["cert_file"],
        base / server["key_file"],
        base / server["client_ca_file"],
        tuple(callers),
    )


def _positive_number(table: dict[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"chain.{key} must be a positive number of seconds, got {value!r}")
    return float(value)


def _node_urls(chain: dict[str, Any], base: Path) -> Any:
    """chain.node_urls, or — since provider URLs often carry an API key — one URL per
    line of chain.node_urls_file (mode 0600), or chain.node_urls_env (space-separated)."""
    given = [k for k in ("node_urls", "node_urls_file", "node_urls_env") if k in chain]
    if len(given) > 1:
        raise ConfigError(f"chain.{' and chain.'.join(given)}: give one of them")
    if "node_urls_file" in chain:
        path = base / str(chain["node_urls_file"])
        try:
            text = read_secret_file(path, "chain.node_urls_file").decode()
        except (SecretFileError, UnicodeDecodeError) as exc:
            raise ConfigError(str(exc)) from None
        return [line.strip() for line in text.splitlines() if line.strip()]
    if "node_urls_env" in chain:
        name = str(chain["node_urls_env"])
        value = os.environ.get(name, "")
        if not value.strip():
            raise ConfigError(f"chain.node_urls_env: the environment variable {name} is not set")
        return value.split()
    return chain.get("node_urls")


def parse(data: dict[str, Any], base: Path = Path("."), source: Path | str = "evm.toml") -> Config:
    """Checks `data` against adapters/evm/config_schema.py (unknown keys, types), then its
    meaning."""
    try:
        check(data, EvmToml, source)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from None
    for section, value in data.items():
        if section not in _KNOWN:
            raise ConfigError(f"unknown section [{section}] (known: server, chain, metrics, log)")
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] must be a table")
        unknown = set(value) - _KNOWN[section]
        if unknown:
            raise ConfigError(f"unknown key(s) in [{section}]: {', '.join(sorted(unknown))}")
    server = data.get("server", {})
    chain = data.get("chain")
    if chain is None:
        raise ConfigError("missing [chain] section")

    listen = server.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen, str) or ":" not in listen:
        raise ConfigError(f"server.listen must be 'host:port', got {listen!r}")

    chain_id = chain.get("chain_id")
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise ConfigError(
            f"chain.chain_id is required and must be a positive integer, got {chain_id!r}"
        )

    node_urls = _node_urls(chain, base)
    if not isinstance(node_urls, list) or not node_urls:
        raise ConfigError("chain.node_urls is required: a non-empty list of ws:// or wss:// URLs")
    for url in node_urls:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            # A URL from a file or the environment may carry an API key: not repeated.
            shown = (
                repr(url)
                if "node_urls" in chain
                else "an entry of "
                + ("chain.node_urls_file" if "node_urls_file" in chain else "chain.node_urls_env")
            )
            raise ConfigError(f"chain.node_urls entries must be ws:// or wss:// URLs, got {shown}")

    tokens = chain.get("tokens", [])
    if not isinstance(tokens, list):
        raise ConfigError("chain.tokens must be a list of ERC-20 contract addresses")
    for token in tokens:
        if not isinstance(token, str) or not _ADDRESS.fullmatch(token):
            raise ConfigError(f"chain.tokens entries must be 0x + 40 hex digits, got {token!r}")
    lowered = tuple(dict.fromkeys(t.lower() for t in tokens))

    window = chain.get("reorg_window_blocks", DEFAULT_REORG_WINDOW_BLOCKS)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"chain.reorg_window_blocks must be a positive integer, got {window!r}")

    metrics_listen = data.get("metrics", {}).get("listen")
    if metrics_listen is not None and (
        not isinstance(metrics_listen, str) or ":" not in metrics_listen
    ):
        raise ConfigError(f"metrics.listen must be 'host:port', got {metrics_listen!r}")
    trace_name = chain.get("internal_transfers", TraceMethod.OFF.value)
    known_methods = [m.value for m in TraceMethod]
    if trace_name not in known_methods:
        raise ConfigError(
            f"chain.internal_transfers must be one of {', '.join(known_methods)}, "
            f"got {trace_name!r}"
        )

    return Config(
        listen=listen,
        metrics_listen=metrics_listen,
        log_level=str(data.get("log", {}).get("level", "info")),
        chain_id=chain_id,
        node_urls=tuple(node_urls),
        tokens=lowered,
        heartbeat_interval_s=_positive_number(
            chain, "heartbeat_interval_s", DEFAULT_HEARTBEAT_INTERVAL_S
        ),
        poll_interval_s=_positive_number(chain, "poll_interval_s", DEFAULT_POLL_INTERVAL_S),
        reorg_window_blocks=window,
        request_timeout_s=_positive_number(chain, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S),
        internal_transfers=TraceMethod(trace_name),
        tls=_tls(server, base),
    )


def load(path: Path) -> Config:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse(data, path.parent, path)
