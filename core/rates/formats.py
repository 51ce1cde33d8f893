"""Pure parsers for public rate APIs' responses: bytes in, Decimal or a reason out.

JSON is decoded with parse_float=Decimal so that no binary float ever holds a
rate, even when an API sends a number instead of a string. Each parser raises
RateSourceError with a reason short enough for a log line and an API error.

Formats (as served by the real APIs):
- Coinbase  GET /v2/exchange-rates?currency=ETH
    {"data": {"currency": "ETH", "rates": {"USD": "3012.55", ...}}}
    errors: {"errors": [{"id": "invalid_request", "message": "Invalid currency"}]}
- Kraken    GET /0/public/Ticker?pair=ETHUSD
    {"error": [], "result": {"XETHZUSD": {"a": [...], "b": [...], "c": ["3012.3", "0.01"], ...}}}
    errors: {"error": ["EQuery:Unknown asset pair"], "result": {}}
  Kraken answers under its own canonical pair name (ETHUSD -> XETHZUSD), so
  the one entry of a one-pair query is the answer.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from core.rates.sources import RateSourceError

# Plain decimals only: no exponent, no sign, no NaN/Infinity, bounded length so a
# hostile or broken feed cannot hand us a million-digit number.
_RATE = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?")


def parse_rate_text(value: object) -> Decimal:
    """A positive rate from a JSON string (or a JSON number already decoded as Decimal)."""
    if isinstance(value, bool) or not isinstance(value, str | Decimal | int):
        raise RateSourceError(f"rate is {type(value).__name__}, not a decimal string")
    text = str(value)
    if not _RATE.fullmatch(text):
        raise RateSourceError(f"rate {text[:40]!r} is not a plain decimal number")
    rate = Decimal(text)
    if rate <= 0:
        raise RateSourceError(f"rate {text} is not positive")
    return rate


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise RateSourceError("response is not valid JSON") from None


def parse_coinbase(body: bytes, symbol: str, currency: str) -> Decimal:
    """The rate for one `symbol` in `currency` from a /v2/exchange-rates body."""
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise RateSourceError("response is not a JSON object")
    errors = doc.get("errors")
    if errors:
        raise RateSourceError(f"API error: {_coinbase_errors(errors)}")
    data = doc.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("rates"), dict):
        raise RateSourceError("response has no data.rates object")
    base = data.get("currency")
    if not isinstance(base, str) or base.upper() != symbol.upper():
        # A proxy or cache answering for another currency would misprice silently.
        raise RateSourceError(f"response is for currency {base!r}, not {symbol}")
    rates = data["rates"]
    if currency.upper() not in rates:
        raise RateSourceError(f"response has no {currency} rate for {symbol}")
    return parse_rate_text(rates[currency.upper()])


def _coinbase_errors(errors: object) -> str:
    if isinstance(errors, list):
        parts = []
        for e in errors[:3]:
            if isinstance(e, dict):
                parts.append(str(e.get("message") or e.get("id") or e)[:100])
            else:
                parts.append(str(e)[:100])
        return ", ".join(parts)
    return str(errors)[:200]


def parse_kraken(body: bytes, pair: str) -> Decimal:
    """The last trade price (c[0]) of `pair` from a /0/public/Ticker body."""
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise RateSourceError("response is not a JSON object")
    errors = doc.get("error")
    if errors:
        shown = ", ".join(str(e)[:100] for e in errors[:3]) if isinstance(errors, list) else errors
        raise RateSourceError(f"API error: {shown}")
    result = doc.get("result")
    if not isinstance(result, dict) or not result:
        raise RateSourceError(f"response has no ticker for {pair}")
    if pair in result:
        ticker = result[pair]
    elif len(result) == 1:
        (ticker,) = result.values()
    else:
        raise RateSourceError(f"response has {len(result)} tickers and none is named {pair}")
    if not isinstance(ticker, dict):
        raise RateSourceError("ticker is not a JSON object")
    last = ticker.get("c")
    if not isinstance(last, list) or not last:
        raise RateSourceError("ticker has no last trade (c)")
    return parse_rate_text(last[0])
