"""The shape of evm.toml (one EVM chain adapter): every key with its type, default and
meaning. adapters/evm/config.py checks a file against it first (unknown keys and wrong
types refused, naming the key), then its own semantic checks; docs/configuration.md is
generated from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

LogLevel = Literal["debug", "info", "warning", "error"]


def _d(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Server(Strict):
    """The adapter's gRPC API (ChainAdapterService)."""

    listen: Annotated[str, _d("host:port of the gRPC API")] = "127.0.0.1:50071"
    cert_file: Annotated[str | None, _d("the adapter's TLS certificate (PEM)")] = None
    key_file: Annotated[str | None, _d("its private key (PEM, mode 0600)")] = None
    client_ca_file: Annotated[str | None, _d("CA that signs the callers' certificates")] = None
    allowed_callers: Annotated[
        list[str] | None, _d('certificate subjects allowed to call, e.g. "CN=kassa-core"')
    ] = None
    dev_plaintext: Annotated[
        bool, _d("serve without TLS (local development only; no TLS keys then)")
    ] = False


class Metrics(Strict):
    """The Prometheus endpoint."""

    listen: Annotated[str | None, _d("host:port of GET /metrics; unset: no endpoint")] = None


class Chain(Strict):
    """The chain and its nodes."""

    chain_id: Annotated[int, _d("EIP-155 chain id; the node must serve the same")]
    node_urls: Annotated[
        list[str] | None, _d("ws:// or wss:// node URLs, tried in order (failover)")
    ] = None
    node_urls_file: Annotated[
        str | None, _d("a file with one node URL per line (mode 0600; URLs carry API keys)")
    ] = None
    node_urls_env: Annotated[
        str | None, _d("an environment variable with space-separated node URLs")
    ] = None
    tokens: Annotated[list[str], _d("ERC-20 contract addresses to report transfers of")] = []
    heartbeat_interval_s: Annotated[float, _d("a Head on every stream at least this often")] = 5.0
    poll_interval_s: Annotated[float, _d("head polling when subscriptions are unavailable")] = 1.0
    reorg_window_blocks: Annotated[int, _d("how deep a reorg the adapter can undo")] = 256
    request_timeout_s: Annotated[float, _d("one JSON-RPC request to the node")] = 30.0
    internal_transfers: Annotated[
        str, _d("native value inside contract calls: off, call_tracer or trace_block")
    ] = "off"


class Log(Strict):
    """Logging (one JSON object per line on stderr: docs/operations.md)."""

    level: Annotated[LogLevel, _d("the lowest level written")] = "info"


class EvmToml(Strict):
    """evm.toml"""

    chain: Chain
    server: Server = msgspec.field(default_factory=Server)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    log: Log = msgspec.field(default_factory=Log)


# -- strict checking: one line naming the key -----------------------------------
# (a copy of core/config_schema.py's: the adapter imports nothing of the core;
# tests/unit/test_telemetry_contract.py keeps the lines equal)

_AT = re.compile(r"(.*?)(?: - at `\$(.*)`)?")
_UNKNOWN = re.compile(r"Object contains unknown field `(.+)`")
_MISSING = re.compile(r"Object missing required field `(.+)`")


class SchemaError(ValueError):
    """One line: the file, the key and what is wrong with it."""


def _key(path: str) -> str:
    """msgspec's `$.chains[0].tiers[1]` -> `chains[0].tiers[1]`."""
    return path.lstrip(".")


def check(raw: dict[str, Any], schema: type[msgspec.Struct], source: Path | str) -> None:
    """Raises SchemaError naming the first unknown key or wrongly typed value."""
    try:
        msgspec.convert(raw, schema, strict=True)
    except msgspec.ValidationError as exc:
        message, at = _AT.fullmatch(str(exc)).groups()  # type: ignore[union-attr]
        where = _key(at or "")
        for pattern, what in ((_UNKNOWN, "unknown key"), (_MISSING, "missing required key")):
            named = pattern.fullmatch(message)
            if named:
                key = f"{where}.{named.group(1)}" if where else named.group(1)
                raise SchemaError(f"{source}: {what} {key!r}") from None
        message = message.replace("`", "")
        raise SchemaError(
            f"{source}: {where or 'the file'}: {message[0].lower()}{message[1:]}"
        ) from None
