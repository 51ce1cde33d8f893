"""Rate sources backed by public HTTP APIs (Coinbase, Kraken).

Each source maps Kassa's asset symbol to the API's own symbol (`symbols`,
e.g. TUSD -> USDT, or BTC -> XBT for Kraken), asks once with a hard
timeout_s, and refuses anything but a 200 with a well-formed, positive rate.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import quote as urlquote

from core.rates.formats import parse_coinbase, parse_kraken
from core.rates.http import http_get
from core.rates.sources import RateSourceError

COINBASE_URL = "https://api.coinbase.com"
KRAKEN_URL = "https://api.kraken.com"
DEFAULT_TIMEOUT_S = 2.0


class _HttpSource:
    name: str

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        symbols: Mapping[str, str] | None = None,
        name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.symbols = {k.upper(): v.upper() for k, v in (symbols or {}).items()}
        if name is not None:
            self.name = name
        self._ssl = ssl_context

    def api_symbol(self, symbol: str) -> str:
        return self.symbols.get(symbol.upper(), symbol.upper())

    async def _get(self, path_and_query: str) -> bytes:
        status, body = await http_get(
            self.base_url + path_and_query, self.timeout_s, ssl_context=self._ssl
        )
        if status != 200:
            raise RateSourceError(f"HTTP {status}")
        return body


class CoinbaseRates(_HttpSource):
    """GET {base}/v2/exchange-rates?currency=ETH; rates are decimal strings."""

    name = "coinbase"

    async def rate(self, symbol: str, currency: str) -> Decimal | None:
        api_symbol = self.api_symbol(symbol)
        body = await self._get(f"/v2/exchange-rates?currency={urlquote(api_symbol)}")
        return parse_coinbase(body, api_symbol, currency.upper())


class KrakenRates(_HttpSource):
    """GET {base}/0/public/Ticker?pair=ETHUSD; the last trade price c[0]."""

    name = "kraken"

    def api_pair(self, symbol: str, currency: str) -> str:
        return f"{self.api_symbol(symbol)}{currency.upper()}"

    async def rate(self, symbol: str, currency: str) -> Decimal | None:
        pair = self.api_pair(symbol, currency)
        body = await self._get(f"/0/public/Ticker?pair={urlquote(pair)}")
        return parse_kraken(body, pair)
