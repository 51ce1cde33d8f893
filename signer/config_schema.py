"""The shape of signer.toml: every table and key the signer reads, with its type,
default and meaning. signer/config.py checks a file against it first (unknown keys,
wrong types and missing required keys refused with one line naming the key), then its
own semantic checks (ranges, host:port, PIN file mode). docs/configuration.md is
generated from it (scripts/gen-config-docs).

The signer is audited on its own and shares no code with the core: the strict check at
the bottom is its own copy of the core's, kept equal (the same mistake gives the same
line) by tests/unit/test_telemetry_contract.py. msgspec is a decoder, not a network
client: it stays within the signer's boundary (tests/unit/test_boundaries.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import msgspec


def _d(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Server(Strict):
    """The signer's gRPC server."""

    listen: Annotated[str, _d("host:port of the gRPC server")] = "127.0.0.1:50061"
    grace_s: Annotated[float, _d("seconds in-flight calls get to finish on SIGTERM")] = 5.0
    insecure_loopback_only: Annotated[
        bool,
        _d("plaintext gRPC, accepted only on a loopback listen address (development, tests)"),
    ] = False
    workers: Annotated[
        int,
        _d(
            "signer processes on the one listen address (1..64), each with its own HSM session; "
            "they share the state directory"
        ),
    ] = 1


class Tls(Strict):
    """Mutual TLS: required to serve unless server.insecure_loopback_only."""

    ca_file: Annotated[str, _d("CA whose client certificates may connect (PEM)")]
    cert_file: Annotated[str, _d("the signer's certificate (PEM)")]
    key_file: Annotated[str, _d("the signer's private key (PEM, mode 0600)")]


class Policy(Strict):
    """The signing policy (default deny); SIGHUP reloads it."""

    file: Annotated[str | None, _d("the policy TOML, required to serve")] = None


class Requests(Strict):
    """Bounds on a signed request's validity window."""

    max_lifetime_s: Annotated[int, _d("a request is good for at most this long (1..60)")] = 60
    max_skew_s: Annotated[int, _d("clocks may differ by this much (1..300)")] = 30


class Hsm(Strict):
    """The PKCS#11 token holding the keys (docs/operations.md: HSM setup per vendor)."""

    module: Annotated[str, _d("path of the vendor's PKCS#11 module")] = (
        "/usr/lib/softhsm/libsofthsm2.so"
    )
    token_label: Annotated[str, _d("label of the token to use")] = "kassa"
    pin_file: Annotated[
        str | None, _d("file holding the user PIN (mode 0600); or pin_env, never both")
    ] = None
    pin_env: Annotated[
        str | None, _d("environment variable holding the user PIN (default KASSA_HSM_PIN)")
    ] = None


class State(Strict):
    """The signer's state: the audit chain, request guard, velocity counters, HD seed."""

    dir: Annotated[str, _d("directory of the state (relative: to this file)")] = "signer-state"


class Log(Strict):
    """Logging."""

    level: Annotated[str, _d("debug, info, warning or error")] = "info"


class Metrics(Strict):
    """Prometheus metrics."""

    listen: Annotated[str | None, _d("host:port of GET /metrics; none: no endpoint")] = None


class Caller(Strict):
    """Who may call Sign: an Ed25519 key per caller (the core), bound to its TLS subject."""

    key_id: Annotated[str, _d("the caller's key id, named in each request")]
    ed25519_public_key: Annotated[str, _d("its Ed25519 public key, 64 hex characters")]
    role: Annotated[str, _d("the role the policy's rules name")]
    tls_subject: Annotated[
        str | None, _d('client certificate subject it must connect with, e.g. "CN=kassa-core"')
    ] = None


class Approver(Strict):
    """Who may approve a payout the policy holds for approval."""

    key_id: Annotated[str, _d("the approver's key id")]
    ed25519_public_key: Annotated[str, _d("its Ed25519 public key, 64 hex characters")]


class SignerToml(Strict):
    """signer.toml."""

    server: Server = msgspec.field(default_factory=Server)
    tls: Tls | None = None
    policy: Policy = msgspec.field(default_factory=Policy)
    requests: Requests = msgspec.field(default_factory=Requests)
    hsm: Hsm = msgspec.field(default_factory=Hsm)
    state: State = msgspec.field(default_factory=State)
    log: Log = msgspec.field(default_factory=Log)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    callers: list[Caller] = []
    approvers: list[Approver] = []


# -- strict checking: one line naming the key -----------------------------------
# (a copy of core/config_schema.py's: the signer shares no code with the core;
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
