"""Rate sources against real local HTTP servers speaking Coinbase's and Kraken's formats.

Each fake API is a stdlib ThreadingHTTPServer on 127.0.0.1 whose behaviour a
test sets: answer, HTTP 500, sleep past the timeout, garbage, hang up, or
answer chunked. The router under test is built from a parsed config, exactly
as the core builds it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from core.rates.config import build_router, parse_rates
from core.rates.http import http_get
from core.rates.router import RateRouter
from core.rates.sources import NoRateError, RateSourceError

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TIMEOUT_S = 0.3


def coinbase_body(currency: str) -> bytes:
    rates = {"ETH": {"USD": "3012.555", "EUR": "2771.3"}, "USDT": {"USD": "1.0003"}}
    if currency not in rates:
        return json.dumps({"errors": [{"id": "not_found", "message": "Invalid currency"}]}).encode()
    return json.dumps({"data": {"currency": currency, "rates": rates[currency]}}).encode()


def kraken_body(pair: str) -> bytes:
    canonical = {"ETHUSD": ("XETHZUSD", "3010.42000"), "USDTUSD": ("USDTZUSD", "1.00010000")}
    if pair not in canonical:
        return json.dumps({"error": ["EQuery:Unknown asset pair"], "result": {}}).encode()
    name, last = canonical[pair]
    ticker = {"a": ["3010.5", "1", "1.000"], "b": ["3010.4", "2", "2.000"], "c": [last, "0.1"]}
    return json.dumps({"error": [], "result": {name: ticker}}).encode()


class FakeApi:
    """One real HTTP server; `mode` decides how it answers the next requests."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.requests.append(self.path)
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                mode = api.mode
                if mode == "hangup":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "slow":
                    time.sleep(TIMEOUT_S * 4)
                if mode == "500":
                    self._send(500, b'{"message":"Internal Server Error"}')
                elif mode == "garbage":
                    self._send(200, b"<html><body>Cloudflare says hi</body></html>")
                elif url.path == "/v2/exchange-rates":
                    self._send(
                        200, coinbase_body(query.get("currency", "")), chunked=mode == "chunked"
                    )
                elif url.path == "/0/public/Ticker":
                    self._send(200, kraken_body(query.get("pair", "")), chunked=mode == "chunked")
                else:
                    self._send(404, b'{"errors":[{"id":"not_found","message":"Not found"}]}')

            def _send(self, status: int, body: bytes, chunked: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(body), 7):
                        part = body[i : i + 7]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def apis() -> Iterator[tuple[FakeApi, FakeApi]]:
    coinbase, kraken = FakeApi(), FakeApi()
    yield coinbase, kraken
    coinbase.close()
    kraken.close()


@pytest.fixture
def router(apis: tuple[FakeApi, FakeApi]) -> RateRouter:
    coinbase, kraken = apis
    coinbase.mode = kraken.mode = "ok"
    coinbase.requests.clear()
    kraken.requests.clear()
    cfg = parse_rates(
        {
            "sources": ["coinbase", "kraken", "fixed"],
            "coinbase": {"base_url": coinbase.url, "timeout_s": TIMEOUT_S},
            "kraken": {"base_url": kraken.url, "timeout_s": TIMEOUT_S},
            "fixed": {"ETH/USD": "3000.00"},
            "symbols": {"TUSD": "USDT"},
            "pairs": {"USDT/USD": {"sources": ["kraken", "coinbase"]}},
        }
    )
    return build_router(cfg)


async def test_primary_answers_with_its_rate_and_name(router: RateRouter) -> None:
    q = await router.quote("ETH", "USD", T0)
    assert (q.rate, q.source, q.quote_time) == (Decimal("3012.555"), "coinbase", T0)


async def test_pair_override_asks_kraken_first(
    router: RateRouter, apis: tuple[FakeApi, FakeApi]
) -> None:
    q = await router.quote("USDT", "USD", T0)
    assert (q.rate, q.source) == (Decimal("1.00010000"), "kraken")
    assert apis[1].requests == ["/0/public/Ticker?pair=USDTUSD"]
    assert apis[0].requests == []


async def test_symbol_mapping_asks_for_the_api_symbol(
    router: RateRouter, apis: tuple[FakeApi, FakeApi]
) -> None:
    q = await router.quote("TUSD", "USD", T0)
    assert (q.rate, q.source) == (Decimal("1.0003"), "coinbase")
    assert apis[0].requests == ["/v2/exchange-rates?currency=USDT"]


@pytest.mark.parametrize("mode", ["500", "slow", "garbage", "hangup"])
async def test_primary_failure_falls_back_to_kraken(
    router: RateRouter, apis: tuple[FakeApi, FakeApi], mode: str
) -> None:
    apis[0].mode = mode
    started = time.monotonic()
    q = await router.quote("ETH", "USD", T0)
    assert (q.rate, q.source) == (Decimal("3010.42000"), "kraken")
    assert time.monotonic() - started < TIMEOUT_S + 0.5  # the timeout is hard


async def test_both_apis_down_falls_back_to_fixed(
    router: RateRouter, apis: tuple[FakeApi, FakeApi]
) -> None:
    apis[0].mode, apis[1].mode = "500", "garbage"
    q = await router.quote("ETH", "USD", T0)
    assert (q.rate, q.source) == (Decimal("3000.00"), "fixed")


async def test_no_source_answers_names_the_pair_and_each_reason(
    router: RateRouter, apis: tuple[FakeApi, FakeApi]
) -> None:
    apis[0].mode, apis[1].mode = "slow", "500"
    with pytest.raises(NoRateError) as info:
        await router.quote("BTC", "USD", T0)
    assert info.value.pair == "BTC/USD"
    assert [(a.source, a.reason) for a in info.value.attempts] == [
        ("coinbase", f"no answer within {TIMEOUT_S:g} s"),
        ("kraken", "HTTP 500"),
        ("fixed", "does not quote this pair"),
    ]
    assert "coinbase: no answer within 0.3 s; kraken: HTTP 500" in str(info.value)


async def test_unknown_pair_reports_each_apis_own_error(router: RateRouter) -> None:
    with pytest.raises(NoRateError) as info:
        await router.quote("NOPE", "USD", T0)
    reasons = dict((a.source, a.reason) for a in info.value.attempts)
    assert reasons == {
        "coinbase": "API error: Invalid currency",
        "kraken": "API error: EQuery:Unknown asset pair",
        "fixed": "does not quote this pair",
    }


async def test_chunked_responses_are_read(
    router: RateRouter, apis: tuple[FakeApi, FakeApi]
) -> None:
    apis[0].mode = "chunked"
    assert (await router.quote("ETH", "USD", T0)).rate == Decimal("3012.555")


async def test_connection_refused_is_a_reason_not_a_crash() -> None:
    # A port we just closed: nothing listens there.
    api = FakeApi()
    url = api.url
    api.close()
    with pytest.raises(RateSourceError, match="transport error"):
        await http_get(url + "/v2/exchange-rates?currency=ETH", TIMEOUT_S)
