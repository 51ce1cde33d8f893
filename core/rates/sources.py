"""Exchange rates for fiat-priced invoices.

A RateSource answers "how many units of fiat is one whole unit of this asset
worth"; the core asks its sources in order and locks the first answer into
the invoice with the source's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from core.domain.money import parse_decimal


@dataclass(frozen=True)
class Quote:
    rate: Decimal  # fiat per whole unit of the asset
    source: str
    quote_time: datetime


class RateSource(Protocol):
    name: str

    async def rate(self, symbol: str, currency: str) -> Decimal | None:
        """The rate, or None when this source does not quote the pair."""


class NoRateError(LookupError):
    pass


class FixedRates:
    """Rates fixed by configuration ("TUSD/USD" = "1.00"): stablecoins, demos."""

    name = "fixed"

    def __init__(self, rates: dict[str, str]) -> None:
        self._rates = {pair.upper(): parse_decimal(rate) for pair, rate in rates.items()}

    async def rate(self, symbol: str, currency: str) -> Decimal | None:
        return self._rates.get(f"{symbol}/{currency}".upper())


async def quote(sources: list[RateSource], symbol: str, currency: str, now: datetime) -> Quote:
    for source in sources:
        rate = await source.rate(symbol, currency)
        if rate is not None:
            return Quote(rate, source.name, now)
    raise NoRateError(f"no rate source quotes {symbol}/{currency}")
