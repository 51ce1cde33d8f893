"""Whether the core can do its work, decided from what it observes; published as grpc.health.v1.

The decider (`decide`) is pure: the database answered or not, and per chain
whether its adapter's block stream is open, how long since it last said
anything and how far the applied height lags the adapter's head. The
watcher (`watch`) observes every `interval_s` and publishes each change
through a callback (core/server.py sets the gRPC health statuses), logging
one line per change of state, not one per observation.

What is published:
  ""                        SERVING only with the database and every chain followed
  each core gRPC service    SERVING while the database answers
  "kassa.chain/<chain id>"  SERVING while that chain is followed within the bounds
  "kassa.signer"            with a [signer] only: SERVING while the signer link works
                            (core/signer_link); never part of "", so a signer that goes
                            away stops payouts, not invoices
  "kassa.webhooks"          with delivery processes only: SERVING while every one runs,
                            reports and reaches the database (core/webhooks/supervisor.py);
                            never part of "" either
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("kassa.core.health")
CHAIN_PREFIX = "kassa.chain/"
SIGNER_SERVICE = "kassa.signer"
WEBHOOKS_SERVICE = "kassa.webhooks"


class HealthSettingsError(ValueError):
    pass


@dataclass(frozen=True)
class HealthSettings:
    """[health] in core.toml."""

    # How often the database and the chains are looked at.
    interval_s: float = 1.0
    # A stream silent this long is not following (adapters send a heartbeat every few seconds).
    stale_after_s: float = 30.0
    # Applied height this far behind the adapter's head is reported; 0: no bound.
    max_lag_blocks: int = 0
    # CreateInvoice on a chain that is not followed is refused (UNAVAILABLE,
    # CHAIN_UNAVAILABLE); false only where no adapter runs on purpose (API tests).
    invoices_need_chain: bool = True


def _number(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise HealthSettingsError(f"health.{key} must be a positive number, got {value!r}")
    return float(value)


def parse(table: Mapping[str, Any]) -> HealthSettings:
    known = {"interval_s", "stale_after_s", "max_lag_blocks", "invoices_need_chain"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise HealthSettingsError(f"unknown key health.{unknown[0]}")
    lag = table.get("max_lag_blocks", 0)
    if isinstance(lag, bool) or not isinstance(lag, int) or lag < 0:
        raise HealthSettingsError(f"health.max_lag_blocks must be a whole number >= 0, got {lag!r}")
    need = table.get("invoices_need_chain", True)
    if not isinstance(need, bool):
        raise HealthSettingsError(f"health.invoices_need_chain must be true or false, got {need!r}")
    return HealthSettings(
        interval_s=_number(table, "interval_s", HealthSettings.interval_s),
        stale_after_s=_number(table, "stale_after_s", HealthSettings.stale_after_s),
        max_lag_blocks=lag,
        invoices_need_chain=need,
    )


@dataclass(frozen=True)
class ChainView:
    """What the core sees of one chain's follower."""

    streaming: bool
    since_event_s: float | None
    lag_blocks: int | None


def chain_problem(view: ChainView, settings: HealthSettings) -> str | None:
    """Why the chain is not followed, or None when it is."""
    if not view.streaming or view.since_event_s is None:
        return "no block stream from the chain's adapter"
    if view.since_event_s > settings.stale_after_s:
        # Stable texts (no growing numbers): a verdict changes only with the state.
        return f"the chain's adapter has sent nothing for over {settings.stale_after_s:g} s"
    if settings.max_lag_blocks and (view.lag_blocks or 0) > settings.max_lag_blocks:
        return f"over {settings.max_lag_blocks} blocks behind the adapter's head"
    return None


@dataclass(frozen=True)
class Verdict:
    database_ok: bool
    # chain id -> why it is not followed (None: followed).
    chains: Mapping[str, str | None]

    @property
    def serving(self) -> bool:
        return self.database_ok and all(p is None for p in self.chains.values())


def decide(database_ok: bool, views: Mapping[str, ChainView], settings: HealthSettings) -> Verdict:
    verdict = Verdict(database_ok, {c: chain_problem(v, settings) for c, v in views.items()})
    assert set(verdict.chains) == set(views), "every chain is judged"
    assert not verdict.serving or database_ok, "never SERVING without the database"
    return verdict


async def watch(
    settings: HealthSettings,
    probe_database: Callable[[], Awaitable[bool]],
    views: Callable[[], Mapping[str, ChainView]],
    publish: Callable[[Verdict], Awaitable[None]],
) -> None:
    """Observes forever; publishes the first verdict and every change, logging each change once."""
    last: Verdict | None = None
    while True:
        verdict = decide(await probe_database(), views(), settings)
        if verdict != last:
            await publish(verdict)
            _log_change(last, verdict)
            last = verdict
        await asyncio.sleep(settings.interval_s)


def _log_change(before: Verdict | None, after: Verdict) -> None:
    if before is None or before.database_ok != after.database_ok:
        if after.database_ok:
            log.info("database reachable")
        else:
            log.error("database unreachable: reporting NOT_SERVING")
    for chain, problem in after.chains.items():
        was = None if before is None else before.chains.get(chain)
        if before is not None and problem == was:
            continue
        if problem is None:
            log.info("chain followed", extra={"chain": chain})
        else:
            log.warning("chain not followed", extra={"chain": chain, "reason": problem})
