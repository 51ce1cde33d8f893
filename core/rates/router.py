"""Which sources quote which pair, in what order, and how long a quote is reused.

The router is what the core holds: `await router.quote("ETH", "USD", now)`
asks the pair's sources in order (the pair's own list, else the default
list), refuses answers outside the pair's sanity band, and may reuse a
recent quote for cache_s seconds so that a burst of invoices does not hammer
the APIs (and get us rate-limited exactly when we need them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.rates.sources import NO_BAND, NoRateError, Quote, RateSource, SanityBand, ask_in_order


@dataclass(frozen=True)
class PairPolicy:
    sources: tuple[str, ...] | None = None  # None: the default order
    band: SanityBand = NO_BAND


class RateRouter:
    def __init__(
        self,
        sources: Mapping[str, RateSource],
        default_order: Sequence[str],
        pairs: Mapping[str, PairPolicy] | None = None,
        cache_s: float = 0.0,
    ) -> None:
        self.sources = dict(sources)
        self.default_order = tuple(default_order)
        self.pairs = {k.upper(): v for k, v in (pairs or {}).items()}
        self.cache_s = cache_s
        for name in self.default_order + tuple(
            n for p in self.pairs.values() for n in (p.sources or ())
        ):
            if name not in self.sources:
                raise ValueError(f"rate source {name!r} is named but not built")
        self._cache: dict[str, Quote] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def order_for(self, symbol: str, currency: str) -> list[RateSource]:
        policy = self.pairs.get(f"{symbol}/{currency}".upper())
        names = policy.sources if policy and policy.sources is not None else self.default_order
        return [self.sources[n] for n in names]

    def band_for(self, symbol: str, currency: str) -> SanityBand:
        policy = self.pairs.get(f"{symbol}/{currency}".upper())
        return policy.band if policy else NO_BAND

    def cached(self, pair: str, now: datetime) -> Quote | None:
        q = self._cache.get(pair)
        if q is None or self.cache_s <= 0:
            return None
        age_s = (now - q.quote_time).total_seconds()
        # A quote "from the future" (clock stepped back) is not trusted either.
        return q if 0 <= age_s < self.cache_s else None

    async def quote(self, symbol: str, currency: str, now: datetime) -> Quote:
        pair = f"{symbol}/{currency}".upper()
        if self.cache_s <= 0:
            return await self._ask(symbol, currency, now)
        hit = self.cached(pair, now)
        if hit is not None:
            return hit
        # One request per pair at a time: concurrent creations wait for it and reuse it.
        lock = self._locks.setdefault(pair, asyncio.Lock())
        async with lock:
            hit = self.cached(pair, now)
            if hit is not None:
                return hit
            q = await self._ask(symbol, currency, now)
            self._cache[pair] = q
            return q

    async def _ask(self, symbol: str, currency: str, now: datetime) -> Quote:
        order = self.order_for(symbol, currency)
        if not order:
            raise NoRateError(f"{symbol}/{currency}")
        return await ask_in_order(order, symbol, currency, now, self.band_for(symbol, currency))
