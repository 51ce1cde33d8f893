"""A chain's settings ([[chains]] in core.toml) and the view of them that areas take.

Parsed by core/config.py, which composes every area's settings; the areas
(chain following, payouts, sweeps) take `Chains` rather than the whole
Config, so none of them imports core/config.py back.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from core.tls import ClientTls


@dataclass(frozen=True)
class ConfirmationTier:
    """Invoices worth at most `up_to` (in `currency`) need `confirmations`."""

    up_to: Decimal
    currency: str
    confirmations: int


DEFAULT_FINALITY_DEPTH = 64


@dataclass(frozen=True)
class ChainConfig:
    id: str  # CAIP-2
    adapter: str  # host:port of the chain's adapter
    confirmations: int = 3  # above every tier, and for invoices that cannot be valued
    tiers: tuple[ConfirmationTier, ...] = ()
    # A mempool sighting not mined within this long is dropped (it was
    # replaced, evicted or never propagated) and stops counting.
    pending_ttl_s: int = 3600
    # The identity the adapter's certificate must carry (a DNS name in its
    # subjectAltName): whoever answers at `adapter` without it feeds no blocks.
    adapter_name: str = ""
    # Blocks after which an outgoing transaction (payout, refund, sweep) is
    # final: until then a reorg that removes it sends it again. 64 is two
    # Ethereum epochs, where its beacon chain finalizes; 0: the default.
    finality_depth: int = 0
    # Seconds a nonce gap of the hot key that no payout can still fill stands
    # before a nonce fill (a 0-value transaction to itself) takes the nonce so
    # the payouts after it can be mined (core/payouts/gaps.py). Long enough
    # that a gap closing by itself is not filled.
    nonce_fill_after_s: float = 300.0

    @property
    def finality_blocks(self) -> int:
        return self.finality_depth or max(DEFAULT_FINALITY_DEPTH, self.confirmations)

    @property
    def zero_conf(self) -> bool:
        """Some tier settles from the mempool: the follower must watch it."""
        return any(t.confirmations == 0 for t in self.tiers)

    def confirmations_for(self, value: Decimal | None, currency: str | None) -> int:
        """The smallest tier that covers the invoice's fiat value decides."""
        if value is None or currency is None:
            return self.confirmations
        for tier in sorted(self.tiers, key=lambda t: t.up_to):
            if tier.currency == currency and value <= tier.up_to:
                return tier.confirmations
        return self.confirmations


class Chains(Protocol):
    """The configured chains (core.config.Config is one)."""

    @property
    def chains(self) -> tuple[ChainConfig, ...]: ...

    # [adapters] mutual TLS of every adapter link; None only with adapters.dev_plaintext.
    @property
    def adapters_tls(self) -> ClientTls | None: ...

    def chain(self, chain_id: str) -> ChainConfig | None: ...
