"""The shape of core.toml: every table and key the core reads, with its type, default
and meaning. core/config.py checks a file against it first (unknown keys and wrong
types refused, naming the key); the semantic checks (ranges, cross references)
follow there. docs/configuration.md is generated from it (scripts/gen-config-docs).

Tables owned by an area's own parser (rates, webhooks, events, payouts,
sweeps, reconcile, support, leadership, jetstream) are checked as tables here and key by key by that parser.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

Table = dict[str, Any]
LogLevel = Literal["debug", "info", "warning", "error"]


def _d(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Server(Strict):
    """The gRPC API."""

    listen: Annotated[str, _d("host:port of the gRPC API")] = "127.0.0.1:50051"
    cert_file: Annotated[str | None, _d("the API's TLS certificate (PEM)")] = None
    key_file: Annotated[str | None, _d("its private key (PEM, mode 0600)")] = None
    client_ca_file: Annotated[
        str | None, _d("CA of client certificates; set: clients must present one")
    ] = None
    dev_plaintext: Annotated[
        bool, _d("serve without TLS (local development only; no TLS files then)")
    ] = False


class Database(Strict):
    """PostgreSQL."""

    dsn: Annotated[str | None, _d("postgresql:// URL of the database, without the password")] = None
    dsn_file: Annotated[str | None, _d("a file holding the whole DSN (mode 0600)")] = None
    dsn_env: Annotated[str | None, _d("an environment variable holding the whole DSN")] = None
    password_file: Annotated[str | None, _d("a file holding the password (mode 0600)")] = None
    password_env: Annotated[str | None, _d("an environment variable holding it")] = None
    pool_size: Annotated[int, _d("connections in the pool")] = 10


class Hd(Strict):
    """The account xpub deposit addresses derive from (give one of the two)."""

    account_xpub: Annotated[str | None, _d("the xpub itself")] = None
    account_xpub_file: Annotated[str | None, _d("a file holding it (relative to core.toml)")] = None


class Invoices(Strict):
    """Invoice lifetimes, limits and tolerance."""

    default_ttl_s: Annotated[int, _d("lifetime of an invoice without one, seconds")] = 900
    max_ttl_s: Annotated[int, _d("longest lifetime a caller may ask for, seconds")] = 604800
    max_price: Annotated[str | int, _d("largest fiat price accepted, a decimal string")] = (
        1_000_000_000
    )
    underpayment_tolerance_bps: Annotated[
        int, _d("underpayment still counted as paid, basis points of the amount due")
    ] = 0
    late_payment_window_s: Annotated[
        int, _d("how long after expiry the deposit address is still watched (paid_late)")
    ] = 86400
    expiry_interval_s: Annotated[float, _d("how often expiries are looked for, seconds")] = 1.0


class Auth(Strict):
    """API keys."""

    key_cache_s: Annotated[
        float, _d("how long a looked-up key is trusted (revocation delay), seconds")
    ] = 5.0


class Tier(Strict):
    """A confirmation tier: invoices worth at most up_to need `confirmations`."""

    up_to: Annotated[str, _d("fiat value, a decimal string")]
    confirmations: Annotated[int, _d("confirmations for the tier; 0: zero-conf")]
    currency: Annotated[str, _d("ISO 4217 code of up_to")] = "USD"


class Chain(Strict):
    """One chain the core follows ([[chains]], one entry per chain)."""

    id: Annotated[str, _d("CAIP-2 chain id, e.g. eip155:1")]
    adapter: Annotated[str, _d("host:port of the chain's adapter")]
    adapter_name: Annotated[
        str | None, _d("the name the adapter's certificate must carry; default from the id")
    ] = None
    confirmations: Annotated[
        int, _d("confirmations above every tier and for invoices that cannot be valued")
    ] = 3
    tiers: Annotated[list[Tier], _d("confirmation tiers by fiat value")] = []
    pending_ttl_s: Annotated[
        int, _d("a mempool sighting not mined within this long is dropped, seconds")
    ] = 3600
    finality_depth: Annotated[
        int, _d("blocks after which a payment cannot be reorged; 0: the default")
    ] = 0
    nonce_fill_after_s: Annotated[
        float,
        _d(
            "seconds a nonce gap of the hot key that no payout will fill stands before a "
            "0-value transaction to itself fills it (docs/payouts.md)"
        ),
    ] = 300.0


class Asset(Strict):
    """One asset invoices may be in ([[assets]])."""

    id: Annotated[str, _d("CAIP-19 asset id on a configured chain")]
    symbol: Annotated[str, _d("ticker, for rates")]
    decimals: Annotated[int, _d("base units per whole unit, as a power of ten")]


class Adapters(Strict):
    """Mutual TLS to the chain adapters."""

    ca_file: Annotated[str | None, _d("CA that signs the adapters' certificates")] = None
    cert_file: Annotated[str | None, _d("the core's client certificate")] = None
    key_file: Annotated[str | None, _d("its private key (mode 0600)")] = None
    dev_plaintext: Annotated[bool, _d("plaintext to the adapters (development only)")] = False


class Secrets(Strict):
    """Keys that seal webhook signing secrets at rest (docs/operations.md)."""

    webhook_kek_file: Annotated[str | None, _d("a file holding the keyring (mode 0600)")] = None
    webhook_kek_env: Annotated[str | None, _d("an environment variable holding it")] = None


class Health(Strict):
    """When the core reports NOT_SERVING and refuses invoices on a chain (docs/operations.md)."""

    interval_s: Annotated[float, _d("how often the database and chains are checked")] = 1.0
    stale_after_s: Annotated[
        float, _d("a chain whose adapter has said nothing this long is not followed")
    ] = 30.0
    max_lag_blocks: Annotated[
        int, _d("applied height this far behind the adapter's head is not followed; 0: no bound")
    ] = 0
    invoices_need_chain: Annotated[
        bool, _d("refuse CreateInvoice (UNAVAILABLE) on a chain that is not followed")
    ] = True


class Metrics(Strict):
    """The Prometheus endpoint (docs/operations.md lists the metrics)."""

    listen: Annotated[str | None, _d("host:port of GET /metrics; unset: no endpoint")] = None
    interval_s: Annotated[float, _d("how often the backlog gauges are read, seconds")] = 5.0


class Signer(Strict):
    """The signer: `serve` checks the link before it opens its port (docs/operations.md)."""

    target: Annotated[str, _d("host:port of the signer")]
    caller_key_file: Annotated[
        str, _d("the core's Ed25519 caller key: PEM PKCS#8 or 64 hex characters (mode 0600)")
    ]
    caller_key_id: Annotated[str, _d("the key id the signer's [[callers]] gives it")] = "core"
    ca_file: Annotated[str | None, _d("CA that signs the signer's certificate")] = None
    cert_file: Annotated[
        str | None, _d("the core's client certificate (the signer's tls_subject)")
    ] = None
    key_file: Annotated[str | None, _d("its private key (mode 0600)")] = None
    server_name: Annotated[
        str, _d("the name the signer's certificate must carry, when target is an address")
    ] = ""
    dev_plaintext: Annotated[
        bool, _d("plaintext to a loopback signer (development only; no TLS files then)")
    ] = False
    startup_timeout_s: Annotated[
        float,
        _d(
            "how long `serve` waits for the signer to answer before exiting 1, seconds "
            "(a refused or silent signer is retried; a TLS or allowlist refusal is not)"
        ),
    ] = 60.0
    health_interval_s: Annotated[
        float, _d("how often the running core checks the signer link, seconds")
    ] = 10.0


class Log(Strict):
    """Logging (one JSON object per line on stderr: docs/operations.md)."""

    level: Annotated[LogLevel, _d("the lowest level written")] = "info"


class CoreToml(Strict):
    """core.toml"""

    database: Database
    chains: Annotated[list[Chain], _d("the chains, at least one")]
    server: Server = msgspec.field(default_factory=Server)
    hd: Hd = msgspec.field(default_factory=Hd)
    invoices: Invoices = msgspec.field(default_factory=Invoices)
    auth: Auth = msgspec.field(default_factory=Auth)
    assets: Annotated[list[Asset], _d("the assets")] = []
    adapters: Adapters = msgspec.field(default_factory=Adapters)
    secrets: Secrets = msgspec.field(default_factory=Secrets)
    health: Health = msgspec.field(default_factory=Health)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    log: Log = msgspec.field(default_factory=Log)
    rates: Annotated[Table, _d("exchange rates: sources, fixed rates (core/rates/config.py)")] = {}
    webhooks: Annotated[Table, _d("webhook delivery and retries (docs/webhooks.md)")] = {}
    events: Annotated[Table, _d("event stream buffers")] = {}
    signer: Annotated[
        Signer | None, _d("the signer; without it payouts and sweeps are off (docs/payouts.md)")
    ] = None
    payouts: Annotated[Table, _d("payouts: hot key, fee caps, timing (docs/payouts.md)")] = {}
    sweeps: Annotated[Table, _d("deposit sweeps to treasuries (docs/payouts.md)")] = {}
    reconcile: Annotated[Table, _d("scheduled reconciliation")] = {}
    leadership: Annotated[
        Table, _d("leadership among core replicas: lease_s, holder (docs/scaling.md)")
    ] = {}
    jetstream: Annotated[
        Table, _d("the outbox relayed to NATS JetStream; off unless given (docs/scaling.md)")
    ] = {}
    support: Annotated[
        Table,
        _d("the support queue: second approval, stuck and failing thresholds (docs/support.md)"),
    ] = {}


# -- strict checking: one line naming the key -----------------------------------
# (the adapter and the signer keep their own copy of these lines; the same mistake
# gives the same line in each: tests/unit/test_telemetry_contract.py)

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
