"""The `[rates]` section of the core's configuration: a pure parser and a factory.

    [rates]
    sources = ["coinbase", "kraken", "fixed"]   # default order; default ["fixed"]
    cache_s = 0                                  # reuse a pair's quote this long; 0 = off

    [rates.coinbase]                             # optional; these are the defaults
    base_url = "https://api.coinbase.com"
    timeout_s = 2

    [rates.kraken]
    base_url = "https://api.kraken.com"
    timeout_s = 2
    symbols = { BTC = "XBT" }                    # per-source symbol map, over [rates.symbols]

    [rates.fixed]
    "TUSD/USD" = "1.00"

    [rates.symbols]                              # Kassa symbol -> the APIs' symbol
    TUSD = "USDT"

    [rates.pairs."ETH/USD"]
    sources = ["kraken", "coinbase"]             # this pair's own order
    min_rate = "100"                             # sanity band: answers outside it are refused
    max_rate = "100000"

The default order is ["fixed"] so that a configuration without `sources`
never makes a network call it did not ask for. Rates and bands are strings:
a TOML float would put a binary float between the operator and the rate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from core.domain.money import AmountError, parse_decimal
from core.rates.apis import COINBASE_URL, DEFAULT_TIMEOUT_S, KRAKEN_URL, CoinbaseRates, KrakenRates
from core.rates.router import PairPolicy, RateRouter
from core.rates.sources import FixedRates, RateSource, SanityBand

HTTP_SOURCES = {"coinbase": COINBASE_URL, "kraken": KRAKEN_URL}
KNOWN_SOURCES = (*HTTP_SOURCES, "fixed")
_TOP_KEYS = {"sources", "cache_s", "fixed", "symbols", "pairs", *HTTP_SOURCES}
_HTTP_KEYS = {"base_url", "timeout_s", "symbols"}
_PAIR_KEYS = {"sources", "min_rate", "max_rate"}
_PAIR = re.compile(r"[A-Z0-9]{1,20}/[A-Z]{3}")
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}")
MAX_TIMEOUT_S = 30.0
MAX_CACHE_S = 3600.0


class RatesConfigError(ValueError):
    """A one-line reason naming the offending key, e.g. rates.pairs."ETH/USD".sources."""


@dataclass(frozen=True)
class HttpSourceConfig:
    base_url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    symbols: dict[str, str] = field(default_factory=dict)  # merged over the global map


@dataclass(frozen=True)
class RatesConfig:
    sources: tuple[str, ...] = ("fixed",)
    cache_s: float = 0.0
    fixed: dict[str, str] = field(default_factory=dict)  # "TUSD/USD" -> "1.00"
    http: dict[str, HttpSourceConfig] = field(default_factory=dict)  # every HTTP kind
    pairs: dict[str, PairPolicy] = field(default_factory=dict)


def parse_rates(raw: Mapping[str, Any]) -> RatesConfig:
    """Parse the `[rates]` table (pass `toml.get("rates", {})`)."""
    if not isinstance(raw, Mapping):
        raise RatesConfigError("rates must be a table")
    _no_unknown(raw, _TOP_KEYS, "rates")
    sources = _source_list(raw.get("sources", ["fixed"]), "rates.sources")
    cache_s = _number(raw.get("cache_s", 0), "rates.cache_s", 0.0, MAX_CACHE_S)
    fixed = _fixed(raw.get("fixed", {}))
    symbols = _symbols(raw.get("symbols", {}), "rates.symbols")
    http = {}
    for kind, default_url in HTTP_SOURCES.items():
        table = raw.get(kind, {})
        where = f"rates.{kind}"
        if not isinstance(table, Mapping):
            raise RatesConfigError(f"{where} must be a table")
        _no_unknown(table, _HTTP_KEYS, where)
        http[kind] = HttpSourceConfig(
            base_url=_url(table.get("base_url", default_url), f"{where}.base_url"),
            timeout_s=_number(
                table.get("timeout_s", DEFAULT_TIMEOUT_S), f"{where}.timeout_s", 0.0, MAX_TIMEOUT_S
            ),
            symbols={**symbols, **_symbols(table.get("symbols", {}), f"{where}.symbols")},
        )
    pairs = {}
    for pair, where, table in _by_pair(raw.get("pairs", {}), "rates.pairs", "{}"):
        if not isinstance(table, Mapping):
            raise RatesConfigError(f"{where} must be a table")
        _no_unknown(table, _PAIR_KEYS, where)
        band = SanityBand(
            _rate_or_none(table.get("min_rate"), f"{where}.min_rate"),
            _rate_or_none(table.get("max_rate"), f"{where}.max_rate"),
        )
        if (
            band.min_rate is not None
            and band.max_rate is not None
            and band.min_rate > band.max_rate
        ):
            raise RatesConfigError(
                f"{where}: min_rate {band.min_rate} exceeds max_rate {band.max_rate}"
            )
        pair_sources = (
            _source_list(table["sources"], f"{where}.sources") if "sources" in table else None
        )
        pairs[pair] = PairPolicy(pair_sources, band)
    return RatesConfig(sources, cache_s, fixed, http, pairs)


def build_sources(cfg: RatesConfig) -> dict[str, RateSource]:
    """Every source the configuration can name, by name (only the named ones are asked)."""
    built: dict[str, RateSource] = {"fixed": FixedRates(cfg.fixed)}
    for kind, hc in cfg.http.items():
        cls = CoinbaseRates if kind == "coinbase" else KrakenRates
        built[kind] = cls(hc.base_url, timeout_s=hc.timeout_s, symbols=hc.symbols)
    return built


def build_router(cfg: RatesConfig) -> RateRouter:
    return RateRouter(build_sources(cfg), cfg.sources, cfg.pairs, cfg.cache_s)


def _no_unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RatesConfigError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _source_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RatesConfigError(
            f'{where} must be a list of source names, e.g. ["coinbase", "fixed"]'
        )
    names = tuple(v.lower() for v in value)
    for name in names:
        if name not in KNOWN_SOURCES:
            raise RatesConfigError(
                f"{where}: unknown source {name!r} (known: {', '.join(KNOWN_SOURCES)})"
            )
    if len(set(names)) != len(names):
        raise RatesConfigError(f"{where}: a source is listed twice")
    return names


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RatesConfigError(f"{where} must be a number of seconds")
    if not low <= value <= high or (value == 0 and where.endswith("timeout_s")):
        low_bracket = "(" if where.endswith("timeout_s") else "["
        raise RatesConfigError(
            f"{where} must be within {low_bracket}{low:g}, {high:g}] seconds, not {value}"
        )
    return float(value)


def _url(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise RatesConfigError(f"{where} must be a string URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise RatesConfigError(f'{where}: expected http(s)://host[:port][/path], got "{value}"')
    return value.rstrip("/")


def _rate(value: object, where: str) -> Decimal:
    if not isinstance(value, str):
        raise RatesConfigError(
            f'{where} must be a string such as "1.00" (a TOML number would pass through a binary float)'
        )
    try:
        return parse_decimal(value)
    except AmountError as exc:
        raise RatesConfigError(f"{where}: {exc}") from None


def _rate_or_none(value: object, where: str) -> Decimal | None:
    return None if value is None else _rate(value, where)


def _by_pair(table: object, section: str, example: str) -> Iterator[tuple[str, str, object]]:
    """(normalised pair, its config path, its value) for a table keyed by "SYM/CUR"."""
    if not isinstance(table, Mapping):
        raise RatesConfigError(f'{section} must be a table such as "ETH/USD" = {example}')
    for pair_key, value in table.items():
        pair = str(pair_key).upper()
        where = f'{section}."{pair_key}"'
        if not _PAIR.fullmatch(pair):
            raise RatesConfigError(f'{where}: a pair is written SYMBOL/CURRENCY, e.g. "ETH/USD"')
        yield pair, where, value


def _fixed(table: object) -> dict[str, str]:
    fixed = {}
    for pair, where, value in _by_pair(table, "rates.fixed", '"3000.00"'):
        _rate(value, where)
        assert isinstance(value, str)
        fixed[pair] = value
    return fixed


def _symbols(table: object, where: str) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise RatesConfigError(f'{where} must be a table such as TUSD = "USDT"')
    out = {}
    for k, v in table.items():
        if (
            not isinstance(v, str)
            or not _SYMBOL.fullmatch(v.upper())
            or not _SYMBOL.fullmatch(str(k).upper())
        ):
            raise RatesConfigError(
                f'{where}.{k}: symbols are letters and digits, e.g. TUSD = "USDT"'
            )
        out[str(k).upper()] = v.upper()
    return out
