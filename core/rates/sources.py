"""Exchange rates for fiat-priced invoices.

A RateSource answers "how many units of fiat is one whole unit of this asset
worth"; the core asks its sources in order and locks the first answer into
the invoice with the source's name. A source that cannot answer says why
(RateSourceError) so that, when no source answers, the error names every
source and its reason instead of a bare "no rate".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from core.domain.money import parse_decimal

log = logging.getLogger("core.rates")


@dataclass(frozen=True)
class Quote:
    rate: Decimal  # fiat per whole unit of the asset
    source: str
    quote_time: datetime  # when the source answered (a cached quote keeps its time)


class RateSource(Protocol):
    name: str

    async def rate(self, symbol: str, currency: str) -> Decimal | None:
        """The rate, or None when this source does not quote the pair.

        Raises RateSourceError when it should quote the pair but cannot now.
        """


class Quoter(Protocol):
    """Something that picks the sources for a pair itself (RateRouter)."""

    async def quote(self, symbol: str, currency: str, now: datetime) -> Quote: ...


class RateSourceError(Exception):
    """One source failed for one pair; the message is the reason, for logs and errors."""


@dataclass(frozen=True)
class Attempt:
    source: str
    reason: str


class NoRateError(LookupError):
    """No source answered; carries the pair and what each source said."""

    def __init__(self, pair: str, attempts: Sequence[Attempt] = ()) -> None:
        self.pair = pair
        self.attempts = tuple(attempts)
        if self.attempts:
            said = "; ".join(f"{a.source}: {a.reason}" for a in self.attempts)
            message = f"no rate for {pair}: {said}"
        else:
            message = f"no rate source is configured for {pair}"
        super().__init__(message)


@dataclass(frozen=True)
class SanityBand:
    """Rates outside [min_rate, max_rate] are refused: a decimal-point slip or a
    broken feed must not price an invoice at a thousandth of its value."""

    min_rate: Decimal | None = None
    max_rate: Decimal | None = None

    def refusal(self, rate: Decimal) -> str | None:
        if self.min_rate is not None and rate < self.min_rate:
            return f"rate {rate} is below the sanity band minimum {self.min_rate}"
        if self.max_rate is not None and rate > self.max_rate:
            return f"rate {rate} is above the sanity band maximum {self.max_rate}"
        return None


NO_BAND = SanityBand()


class FixedRates:
    """Rates fixed by configuration ("TUSD/USD" = "1.00"): stablecoins, demos."""

    name = "fixed"

    def __init__(self, rates: dict[str, str]) -> None:
        self._rates = {pair.upper(): parse_decimal(rate) for pair, rate in rates.items()}

    async def rate(self, symbol: str, currency: str) -> Decimal | None:
        return self._rates.get(f"{symbol}/{currency}".upper())


async def ask_in_order(
    sources: Sequence[RateSource],
    symbol: str,
    currency: str,
    now: datetime,
    band: SanityBand = NO_BAND,
) -> Quote:
    """The first acceptable answer; every refusal is logged and kept for the error.

    No retries here: the fallback for a failing source is the next source, so
    one quote costs at most one request per source.
    """
    pair = f"{symbol}/{currency}"
    attempts: list[Attempt] = []
    for source in sources:
        try:
            rate = await source.rate(symbol, currency)
        except RateSourceError as exc:
            reason = str(exc)
        except Exception as exc:
            # A bug in one source must not stop the fallback; it is logged loudly.
            log.exception("rate source crashed", extra={"source": source.name, "pair": pair})
            reason = f"internal error: {type(exc).__name__}"
        else:
            if rate is None:
                reason = "does not quote this pair"
            elif not rate.is_finite() or rate <= 0:
                reason = f"rate {rate} is not a positive number"
            else:
                refusal = band.refusal(rate)
                if refusal is None:
                    return Quote(rate, source.name, now)
                reason = refusal
        log.warning(
            "rate source refused", extra={"source": source.name, "pair": pair, "reason": reason}
        )
        attempts.append(Attempt(source.name, reason))
    raise NoRateError(pair, attempts)


async def quote(
    sources: Sequence[RateSource] | Quoter, symbol: str, currency: str, now: datetime
) -> Quote:
    """A quote from a plain list of sources (in order) or from a RateRouter."""
    if isinstance(sources, Sequence):
        return await ask_in_order(sources, symbol, currency, now)
    return await sources.quote(symbol, currency, now)
