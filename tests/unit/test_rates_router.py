"""Router order, sanity bands, caching, the NoRateError message, and the config parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.rates.apis import CoinbaseRates, KrakenRates
from core.rates.config import RatesConfigError, build_router, build_sources, parse_rates
from core.rates.router import PairPolicy, RateRouter
from core.rates.sources import (
    FixedRates,
    NoRateError,
    RateSourceError,
    SanityBand,
    quote,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Scripted:
    """An in-memory source that answers from a script and counts calls (no I/O involved)."""

    def __init__(self, name: str, answer: Decimal | str | None) -> None:
        self.name = name
        self.answer = answer
        self.calls = 0

    async def rate(self, symbol: str, currency: str) -> Decimal | None:
        self.calls += 1
        if isinstance(self.answer, str):
            raise RateSourceError(self.answer)
        return self.answer


async def test_default_order_first_answer_wins() -> None:
    a, b = Scripted("a", Decimal("10")), Scripted("b", Decimal("11"))
    router = RateRouter({"a": a, "b": b}, ["a", "b"])
    q = await router.quote("ETH", "USD", T0)
    assert (q.rate, q.source, q.quote_time) == (Decimal("10"), "a", T0)
    assert b.calls == 0


async def test_pair_override_changes_the_order_for_that_pair_only() -> None:
    a, b = Scripted("a", Decimal("10")), Scripted("b", Decimal("11"))
    router = RateRouter({"a": a, "b": b}, ["a", "b"], {"eth/usd": PairPolicy(("b", "a"))})
    assert (await router.quote("ETH", "USD", T0)).source == "b"
    assert (await router.quote("BTC", "USD", T0)).source == "a"
    assert [s.name for s in router.order_for("eth", "usd")] == ["b", "a"]


async def test_failures_fall_back_and_the_error_names_every_source() -> None:
    a = Scripted("coinbase", "HTTP 500")
    b = Scripted("kraken", "no answer within 2 s")
    c = Scripted("fixed", None)
    router = RateRouter({x.name: x for x in (a, b, c)}, ["coinbase", "kraken", "fixed"])
    with pytest.raises(NoRateError) as info:
        await router.quote("ETH", "USD", T0)
    assert info.value.pair == "ETH/USD"
    assert str(info.value) == (
        "no rate for ETH/USD: coinbase: HTTP 500; kraken: no answer within 2 s; "
        "fixed: does not quote this pair"
    )


async def test_sanity_band_refuses_and_falls_back() -> None:
    slipped = Scripted("a", Decimal("3.0125"))  # a decimal-point slip
    good = Scripted("b", Decimal("3012.5"))
    band = SanityBand(Decimal("100"), Decimal("100000"))
    router = RateRouter({"a": slipped, "b": good}, ["a", "b"], {"ETH/USD": PairPolicy(band=band)})
    q = await router.quote("ETH", "USD", T0)
    assert q.source == "b"
    router2 = RateRouter({"a": slipped}, ["a"], {"ETH/USD": PairPolicy(band=band)})
    with pytest.raises(NoRateError, match="below the sanity band minimum 100"):
        await router2.quote("ETH", "USD", T0)


async def test_a_crashing_source_does_not_stop_the_fallback() -> None:
    class Broken:
        name = "broken"

        async def rate(self, symbol: str, currency: str) -> Decimal | None:
            raise KeyError("bug")

    ok = Scripted("ok", Decimal("1"))
    q = await RateRouter({"broken": Broken(), "ok": ok}, ["broken", "ok"]).quote("X", "USD", T0)
    assert q.source == "ok"


async def test_cache_reuses_a_quote_within_cache_s_and_keeps_its_time() -> None:
    a = Scripted("a", Decimal("10"))
    router = RateRouter({"a": a}, ["a"], cache_s=30)
    first = await router.quote("ETH", "USD", T0)
    a.answer = Decimal("20")
    again = await router.quote("ETH", "USD", T0 + timedelta(seconds=29))
    assert again == first and again.quote_time == T0 and a.calls == 1
    fresh = await router.quote("ETH", "USD", T0 + timedelta(seconds=30))
    assert (fresh.rate, fresh.quote_time, a.calls) == (Decimal("20"), T0 + timedelta(seconds=30), 2)
    # A clock that stepped back does not serve a quote from the future.
    await router.quote("ETH", "USD", T0)
    assert a.calls == 3


async def test_cache_off_asks_every_time() -> None:
    a = Scripted("a", Decimal("10"))
    router = RateRouter({"a": a}, ["a"])
    await router.quote("ETH", "USD", T0)
    await router.quote("ETH", "USD", T0)
    assert a.calls == 2


async def test_quote_keeps_its_list_contract_and_accepts_a_router() -> None:
    fixed = FixedRates({"TUSD/USD": "1.00"})
    assert (await quote([fixed], "TUSD", "USD", T0)).rate == Decimal("1.00")
    with pytest.raises(NoRateError, match="no rate for ETH/USD: fixed: does not quote this pair"):
        await quote([fixed], "ETH", "USD", T0)
    router = RateRouter({"fixed": fixed}, ["fixed"])
    assert (await quote(router, "TUSD", "USD", T0)).source == "fixed"


# --- config ---------------------------------------------------------------------------------

FULL = {
    "sources": ["coinbase", "kraken", "fixed"],
    "cache_s": 5,
    "coinbase": {"base_url": "http://127.0.0.1:9/", "timeout_s": 0.5},
    "kraken": {"symbols": {"BTC": "XBT"}},
    "fixed": {"tusd/usd": "1.00"},
    "symbols": {"TUSD": "usdt"},
    "pairs": {"ETH/USD": {"sources": ["kraken", "coinbase"], "min_rate": "100", "max_rate": "1e5"}},
}


def test_full_config_parses() -> None:
    raw = {**FULL, "pairs": {"ETH/USD": {"sources": ["kraken", "coinbase"], "min_rate": "100"}}}
    cfg = parse_rates(raw)
    assert cfg.sources == ("coinbase", "kraken", "fixed")
    assert cfg.cache_s == 5.0
    assert cfg.fixed == {"TUSD/USD": "1.00"}
    assert cfg.http["coinbase"].base_url == "http://127.0.0.1:9"
    assert cfg.http["coinbase"].timeout_s == 0.5
    assert cfg.http["kraken"].base_url == "https://api.kraken.com"
    assert cfg.http["kraken"].symbols == {"TUSD": "USDT", "BTC": "XBT"}
    assert cfg.http["coinbase"].symbols == {"TUSD": "USDT"}
    assert cfg.pairs["ETH/USD"] == PairPolicy(("kraken", "coinbase"), SanityBand(Decimal(100)))
    sources = build_sources(cfg)
    assert isinstance(sources["coinbase"], CoinbaseRates)
    assert isinstance(sources["kraken"], KrakenRates)
    assert sources["kraken"].api_pair("BTC", "usd") == "XBTUSD"
    assert sources["kraken"].api_pair("TUSD", "USD") == "USDTUSD"
    router = build_router(cfg)
    assert [s.name for s in router.order_for("ETH", "USD")] == ["kraken", "coinbase"]
    assert [s.name for s in router.order_for("TUSD", "USD")] == ["coinbase", "kraken", "fixed"]


def test_empty_config_means_fixed_only_and_no_network() -> None:
    cfg = parse_rates({})
    assert cfg.sources == ("fixed",) and cfg.cache_s == 0
    assert [s.name for s in build_router(cfg).order_for("ETH", "USD")] == ["fixed"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sources": ["coinbase", "binance"]}, "rates.sources: unknown source 'binance'"),
        ({"sources": "coinbase"}, "rates.sources must be a list"),
        ({"sources": ["fixed", "fixed"]}, "listed twice"),
        ({"source": ["fixed"]}, "rates: unknown key 'source'"),
        ({"coinbase": {"url": "x"}}, "rates.coinbase: unknown key 'url'"),
        ({"coinbase": {"base_url": "ftp://x"}}, "rates.coinbase.base_url: expected http"),
        ({"kraken": {"timeout_s": 0}}, r"rates.kraken.timeout_s must be within \(0, 30\]"),
        ({"kraken": {"timeout_s": "2"}}, "rates.kraken.timeout_s must be a number"),
        ({"cache_s": -1}, r"rates.cache_s must be within \[0, 3600\]"),
        ({"fixed": {"TUSD/USD": 1.0}}, r'rates.fixed."TUSD/USD" must be a string'),
        ({"fixed": {"TUSD": "1.00"}}, "SYMBOL/CURRENCY"),
        ({"fixed": {"TUSD/USD": "-1"}}, r'rates.fixed."TUSD/USD": must be a positive decimal'),
        ({"pairs": {"ETHUSD": {}}}, r'rates.pairs."ETHUSD": a pair is written'),
        (
            {"pairs": {"ETH/USD": {"sources": ["nope"]}}},
            r'rates.pairs."ETH/USD".sources: unknown source',
        ),
        ({"pairs": {"ETH/USD": {"min_rate": 100}}}, "min_rate must be a string"),
        (
            {"pairs": {"ETH/USD": {"min_rate": "200", "max_rate": "100"}}},
            "min_rate 200 exceeds max_rate 100",
        ),
        ({"pairs": {"ETH/USD": {"band": "1"}}}, "unknown key 'band'"),
        ({"symbols": {"TUSD": "US DT"}}, "rates.symbols.TUSD: symbols are letters"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(RatesConfigError, match=message):
        parse_rates(raw)
