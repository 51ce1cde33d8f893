"""The core's configuration: a TOML file over embedded defaults.

Everything that has a sensible local default has one; what cannot be guessed
(the database, the xpub, the chains and assets) must be given, and a missing
or malformed value is a clear one-line error before anything starts.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from core import health as health_settings
from core.chain.config import ChainConfig, ConfirmationTier
from core.config_schema import CoreToml, SchemaError, check
from core.domain.assets import Asset, chain_of, is_chain_id
from core.domain.money import AmountError, parse_decimal
from core.events import settings as event_settings
from core.leadership import settings as leadership_settings
from core.payouts import config as payouts_config
from core.payouts.signer_client import load_ed25519
from core.rates.config import RatesConfig, RatesConfigError, parse_rates
from core.reconcile import settings as reconcile_settings
from core.relay import settings as relay_settings
from core.secretfiles import SecretError, read_secret_file, secret_from
from core.support import settings as support_settings
from core.telemetry import logs
from core.tls import ClientTls, ServerTls, client_tls, server_tls
from core.webhooks import settings as webhook_settings
from core.webhooks.sealing import Keyring, KeyringError, parse_keyring

T = TypeVar("T")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    # The whole DSN, password included when it came from a file or the environment.
    dsn: str = field(repr=False)
    account_xpub: str
    chains: tuple[ChainConfig, ...]
    assets: tuple[Asset, ...]
    rates: RatesConfig
    listen: str = "127.0.0.1:50051"
    pool_size: int = 10
    default_ttl_s: int = 900
    max_ttl_s: int = 7 * 24 * 3600
    # The largest fiat price an invoice may ask, in major units of its currency.
    max_price: Decimal = Decimal(1_000_000_000)
    # Underpayment that still counts as paid, in basis points of the amount due.
    underpayment_tolerance_bps: int = 0
    # How long after expiry the deposit address is still watched (paid_late).
    late_payment_window_s: int = 24 * 3600
    expiry_interval_s: float = 1.0
    reconnect_backoff_s: float = 1.0
    # How long a looked-up API key is trusted before it is read again (revocation delay).
    key_cache_s: float = 5.0
    # [signer] and [payouts]; None: payouts are off.
    payouts: payouts_config.PayoutsConfig | None = None
    # [webhooks] and [events]: delivery retries and limits, stream buffers.
    webhooks: webhook_settings.WebhookSettings = field(
        default_factory=webhook_settings.WebhookSettings
    )
    events: event_settings.StreamSettings = field(default_factory=event_settings.StreamSettings)
    # [health]: when the core reports NOT_SERVING and refuses invoices on a chain.
    health: health_settings.HealthSettings = field(default_factory=health_settings.HealthSettings)
    # [metrics] listen: host:port of GET /metrics (Prometheus); None: no endpoint.
    metrics_listen: str | None = None
    # [log] level: the lowest level written (the schema allows only the four names).
    log_level: str = "info"
    # How often the backlog gauges are read from PostgreSQL.
    metrics_interval_s: float = 5.0
    # [reconcile]: scheduled reconciliation (core/reconcile).
    reconcile: reconcile_settings.ReconcileSettings = field(
        default_factory=reconcile_settings.ReconcileSettings
    )
    # [leadership]: the lease of roles only one replica may lead (core/leadership).
    leadership: leadership_settings.LeadershipSettings = field(
        default_factory=leadership_settings.LeadershipSettings
    )
    # [jetstream]: the outbox relayed to NATS JetStream (core/relay); None: off.
    jetstream: relay_settings.JetStreamSettings | None = None
    # [support]: the support queue and its actions (core/support).
    support: support_settings.SupportSettings = field(
        default_factory=support_settings.SupportSettings
    )
    extra: dict[str, Any] = field(default_factory=dict)
    # [server] TLS of the public API; None only with server.dev_plaintext = true.
    api_tls: ServerTls | None = None
    # [adapters] mutual TLS to every chain adapter; None only with adapters.dev_plaintext.
    adapters_tls: ClientTls | None = None
    # [secrets] the key-encryption keys of webhook signing secrets (current first).
    webhook_keys: Keyring | None = field(default=None, repr=False)
    # The file it was loaded from (load): the webhook delivery processes load it too.
    path: Path | None = None

    def asset(self, asset_id: str) -> Asset | None:
        return next((a for a in self.assets if a.id == asset_id), None)

    def chain(self, chain_id: str) -> ChainConfig | None:
        return next((c for c in self.chains if c.id == chain_id), None)


def _require(table: dict[str, Any], key: str, where: str, kind: type) -> Any:
    if key not in table:
        raise ConfigError(f"{where}.{key} is required")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key} must be a {kind.__name__}")
    return value


def _xpub(table: dict[str, Any], base: Path) -> str:
    if "account_xpub" in table:
        return str(_require(table, "account_xpub", "hd", str))
    if "account_xpub_file" in table:
        path = base / str(_require(table, "account_xpub_file", "hd", str))
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"hd.account_xpub_file: cannot read {path}: {exc.strerror}") from None
    raise ConfigError("hd.account_xpub or hd.account_xpub_file is required")


def parse(raw: dict[str, Any], base: Path, source: Path | str = "core.toml") -> Config:
    """Checks `raw` against core/config_schema.py (unknown keys, types), then its meaning."""
    try:
        check(raw, CoreToml, source)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from None
    server = raw.get("server", {})
    database = raw.get("database", {})
    invoices = raw.get("invoices", {})
    chains = []
    for i, item in enumerate(raw.get("chains", [])):
        where = f"chains[{i}]"
        chain_id = _require(item, "id", where, str)
        if not is_chain_id(chain_id):
            raise ConfigError(f"{where}.id must be a CAIP-2 EVM chain id like eip155:1")
        confirmations = int(item.get("confirmations", 3))
        if confirmations < 1:
            raise ConfigError(f"{where}.confirmations must be at least 1")
        tiers = []
        for j, tier in enumerate(item.get("tiers", [])):
            at = f"{where}.tiers[{j}]"
            try:
                up_to = parse_decimal(str(_require(tier, "up_to", at, str)))
            except AmountError as exc:
                raise ConfigError(f"{at}.up_to: {exc}") from None
            tier_confirmations = _require(tier, "confirmations", at, int)
            # 0 is zero-conf: invoices of the tier settle on a mempool sighting.
            # Only a tier may allow it, so it is always bounded by an amount.
            if tier_confirmations < 0:
                raise ConfigError(f"{at}.confirmations must be at least 0 (0: zero-conf)")
            tiers.append(
                ConfirmationTier(up_to, str(tier.get("currency", "USD")), tier_confirmations)
            )
        pending_ttl_s = item.get("pending_ttl_s", ChainConfig.pending_ttl_s)
        if (
            isinstance(pending_ttl_s, bool)
            or not isinstance(pending_ttl_s, int)
            or pending_ttl_s < 1
        ):
            raise ConfigError(f"{where}.pending_ttl_s must be a positive whole number of seconds")
        finality_depth = item.get("finality_depth", 0)
        if (
            isinstance(finality_depth, bool)
            or not isinstance(finality_depth, int)
            or (finality_depth and finality_depth < confirmations)
        ):
            raise ConfigError(
                f"{where}.finality_depth must be a whole number of blocks, at least confirmations"
            )
        nonce_fill_after_s = item.get("nonce_fill_after_s", ChainConfig.nonce_fill_after_s)
        if (
            isinstance(nonce_fill_after_s, bool)
            or not isinstance(nonce_fill_after_s, int | float)
            or not 0 <= nonce_fill_after_s <= 86_400
        ):
            raise ConfigError(f"{where}.nonce_fill_after_s must be seconds in 0..86400")
        adapter_name = item.get("adapter_name", default_adapter_name(chain_id))
        if not isinstance(adapter_name, str) or not _DNS_NAME.fullmatch(adapter_name):
            raise ConfigError(f"{where}.adapter_name must be a DNS name (its certificate's)")
        chains.append(
            ChainConfig(
                chain_id,
                _require(item, "adapter", where, str),
                confirmations,
                tuple(tiers),
                pending_ttl_s,
                adapter_name=adapter_name,
                finality_depth=finality_depth,
                nonce_fill_after_s=float(nonce_fill_after_s),
            )
        )
    if not chains:
        raise ConfigError("at least one [[chains]] entry is required")
    assets = []
    for i, item in enumerate(raw.get("assets", [])):
        where = f"assets[{i}]"
        asset_id = _require(item, "id", where, str).lower()
        try:
            chain = chain_of(asset_id)
        except ValueError as exc:
            raise ConfigError(f"{where}.id: {exc}") from None
        if chain not in {c.id for c in chains}:
            raise ConfigError(f"{where}.id is on {chain}, which has no [[chains]] entry")
        decimals = _require(item, "decimals", where, int)
        if not 0 <= decimals <= 36:
            raise ConfigError(f"{where}.decimals must be between 0 and 36")
        assets.append(Asset(asset_id, chain, _require(item, "symbol", where, str), decimals))
    try:
        rates = parse_rates(raw.get("rates", {}))
    except RatesConfigError as exc:
        raise ConfigError(str(exc)) from None
    try:
        payouts = payouts_config.parse(raw, base)
    except payouts_config.PayoutsConfigError as exc:
        raise ConfigError(str(exc)) from None
    try:
        dsn = _dsn(database, base)
        api_tls = server_tls(server, "server", base)
        adapters_tls = client_tls(raw.get("adapters", {}), "adapters", base)
        webhook_keys = _webhook_keys(raw.get("secrets", {}), base)
        if payouts is not None:
            _check_signer_secrets(payouts, raw.get("signer", {}))
    except SecretError as exc:
        raise ConfigError(str(exc)) from None
    config = Config(
        dsn=dsn,
        account_xpub=_xpub(raw.get("hd", {}), base),
        chains=tuple(chains),
        assets=tuple(assets),
        rates=rates,
        listen=str(server.get("listen", Config.listen)),
        pool_size=int(database.get("pool_size", Config.pool_size)),
        default_ttl_s=int(invoices.get("default_ttl_s", Config.default_ttl_s)),
        max_ttl_s=int(invoices.get("max_ttl_s", Config.max_ttl_s)),
        max_price=_max_price(invoices.get("max_price", Config.max_price)),
        expiry_interval_s=float(invoices.get("expiry_interval_s", Config.expiry_interval_s)),
        key_cache_s=float(raw.get("auth", {}).get("key_cache_s", Config.key_cache_s)),
        webhooks=_table(webhook_settings.parse, raw, "webhooks"),
        events=_table(event_settings.parse, raw, "events"),
        health=_table(health_settings.parse, raw, "health"),
        reconcile=_table(reconcile_settings.parse, raw, "reconcile"),
        leadership=_table(leadership_settings.parse, raw, "leadership"),
        jetstream=_table(relay_settings.parse, raw, "jetstream"),
        support=_table(support_settings.parse, raw, "support"),
        underpayment_tolerance_bps=int(invoices.get("underpayment_tolerance_bps", 0)),
        late_payment_window_s=int(
            invoices.get("late_payment_window_s", Config.late_payment_window_s)
        ),
        payouts=payouts,
        **_metrics(raw.get("metrics", {})),
        log_level=str(raw.get("log", {}).get("level", "info")),
        api_tls=api_tls,
        adapters_tls=adapters_tls,
        webhook_keys=webhook_keys,
    )
    if not 0 <= config.underpayment_tolerance_bps < 10_000:
        raise ConfigError("invoices.underpayment_tolerance_bps must be in 0..9999")
    if config.late_payment_window_s < 0:
        raise ConfigError("invoices.late_payment_window_s must not be negative")
    if not 0 < config.default_ttl_s <= config.max_ttl_s:
        raise ConfigError("invoices.default_ttl_s must be positive and at most max_ttl_s")
    return config


def _metrics(table: dict[str, Any]) -> dict[str, Any]:
    listen = table.get("listen")
    if listen is not None and (not isinstance(listen, str) or ":" not in listen):
        raise ConfigError(f"metrics.listen must be 'host:port', got {listen!r}")
    interval_s = table.get("interval_s", Config.metrics_interval_s)
    if isinstance(interval_s, bool) or not isinstance(interval_s, int | float) or interval_s <= 0:
        raise ConfigError(f"metrics.interval_s must be a positive number, got {interval_s!r}")
    return {"metrics_listen": listen, "metrics_interval_s": float(interval_s)}


def _max_price(value: object) -> Decimal:
    """invoices.max_price: a positive decimal (a string or a whole number)."""
    try:
        return parse_decimal(str(value))
    except AmountError as exc:
        raise ConfigError(f"invoices.max_price {exc}") from None


def _table(parser: Callable[[dict[str, Any]], T], raw: dict[str, Any], name: str) -> T:
    """A table parsed by its owner's parser, whose ValueError becomes a ConfigError."""
    try:
        return parser(raw.get(name, {}))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


_DNS_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def default_adapter_name(chain_id: str) -> str:
    """eip155:1 -> eip155-1.adapter.kassa: what scripts/make-dev-certs puts in the SAN."""
    return f"{chain_id.replace(':', '-').lower()}.adapter.kassa"


def _dsn(database: dict[str, Any], base: Path) -> str:
    """database.dsn without a password, plus password_file|password_env; or the whole
    DSN from dsn_file|dsn_env. A password written inline in the config is refused."""
    whole = secret_from(database, "dsn", "database", base)
    if whole is not None:
        if "dsn" in database:
            raise ConfigError("database.dsn and database.dsn_file/dsn_env: give one of them")
        if "password_file" in database or "password_env" in database:
            raise ConfigError("database.password_* goes with database.dsn, not a whole DSN")
        return whole
    dsn = str(_require(database, "dsn", "database", str))
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("database.dsn must be a postgresql:// URL")
    if parts.password is not None or "password" in parse_qs(parts.query):
        raise ConfigError(
            "database.dsn carries a password inline; put it in database.password_file "
            "(mode 0600) or database.password_env, or the whole DSN in database.dsn_file"
        )
    password = secret_from(database, "password", "database", base)
    if password is None:
        return dsn
    user = quote(unquote(parts.username or ""), safe="")
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return str(urlunsplit(parts._replace(netloc=netloc)))


def _webhook_keys(table: dict[str, Any], base: Path) -> Keyring:
    """[secrets] webhook_kek_file|webhook_kek_env: the keys that seal webhook secrets."""
    text = secret_from(table, "webhook_kek", "secrets", base)
    if text is None:
        raise ConfigError(
            "secrets.webhook_kek_file or secrets.webhook_kek_env is required: webhook "
            "signing secrets are stored encrypted (docs/operations.md)"
        )
    try:
        return parse_keyring(text)
    except KeyringError as exc:
        raise ConfigError(f"secrets.webhook_kek: {exc}") from None


def _check_signer_secrets(payouts: payouts_config.PayoutsConfig, signer: dict[str, Any]) -> None:
    """The signer link is mutual TLS unless signer.dev_plaintext; the core's Ed25519
    caller key and its TLS key to the signer are secret files."""
    plaintext = signer.get("dev_plaintext", False) is True
    if payouts.signer.ca_file is None and not plaintext:
        raise SecretError(
            "signer.ca_file, cert_file and key_file are required: the signer link is mutual "
            "TLS (signer.dev_plaintext = true only for a loopback signer in development)"
        )
    if payouts.signer.ca_file is not None and plaintext:
        raise SecretError("signer.dev_plaintext = true and TLS files: choose one")
    read_secret_file(payouts.signer.caller_key_file, "signer.caller_key_file")
    try:
        load_ed25519(payouts.signer.caller_key_file)
    except ValueError:
        raise SecretError(
            f"signer.caller_key_file: {payouts.signer.caller_key_file} is not an Ed25519 key "
            "(PEM PKCS#8, or 64 hex characters of the seed)"
        ) from None
    # Read at start (core/signer_link): unreadable, they are a configuration error
    # here (exit 2, naming the key) rather than an OSError mid-start.
    for key, path in (("ca_file", payouts.signer.ca_file), ("cert_file", payouts.signer.cert_file)):
        if path is not None:
            try:
                path.read_bytes()
            except OSError as exc:
                raise SecretError(f"signer.{key}: cannot read {path}: {exc.strerror}") from None
    if payouts.signer.key_file is not None:
        read_secret_file(payouts.signer.key_file, "signer.key_file")


def load(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return dataclasses.replace(parse(raw, path.parent, path), path=path.resolve())


def load_for_process(path: Path, log: logging.Logger) -> Config | None:
    """The start both of the core's processes share (kassa-core and its delivery
    processes): JSON log lines from the first one, the file loaded, then the
    file's log level. None, after one "configuration refused" line naming the
    file and the error (never a secret: ConfigError texts name keys and paths),
    when the file cannot be used; the caller exits 2."""
    logs.setup()
    try:
        config = load(path)
    except ConfigError as exc:
        log.error("configuration refused", extra={"path": str(path), "error": str(exc)})
        return None
    logs.setup(config.log_level)
    return config
