"""Nonce gaps no payout will fill, and when to fill them: the pure decider.

A payout whose nonce is above a nonce missing on chain cannot be mined until
that nonce is used. Usually the payout holding it is still moving (signing,
broadcast, or landed and reorged out: it re-sends its stored bytes) and the
gap closes by itself. When no payout that can still land holds it — its
payout failed for good (its nonce was consumed by a transaction a reorg then
removed), or the nonce was handed back and no new payout took it — every
later payout on the chain waits forever. `plan` finds such gaps and says
which to fill now: only after `wait_s` since the gap was first seen (a
transient gap closes on its own) and since the last fill of that nonce that
did not stand (a refused fill is not retried at once). The worker writes a
nonce-fill payout for each (core/payouts/worker.py `_fill_gaps`): a
transaction of the hot key to itself, value 0, that the signer signs under
its NONCE_FILL purpose (docs/payouts.md "Nonce gaps").

No I/O: the worker reads the chain's nonces, the key's next nonce and the
payouts holding nonces, and calls `plan` with them and the clock.
Property-tested in tests/unit/test_payout_gaps.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.payouts.machine import LANDED, State

# States in which a payout's nonce is its own and its transaction can still
# reach the chain: being signed at it, signed, broadcast. A landed one not yet
# final is live too: a reorg that removed it sends its stored bytes again.
MOVING = frozenset({State.SIGNING, State.SIGNED, State.BROADCAST})


@dataclass(frozen=True)
class Holder:
    """A payout of the key that has (or had) a nonce, as the worker read it."""

    nonce: int
    state: State
    finalized: bool = False  # landed past the chain's finality depth
    fill: bool = False  # a nonce fill
    create_time: datetime | None = None

    @property
    def live(self) -> bool:
        """Its transaction can still be mined at this nonce."""
        return self.state in MOVING or (self.state in LANDED and not self.finalized)


@dataclass(frozen=True)
class Plan:
    # Every gap no live payout holds and something live waits behind, with the
    # time it was first seen (what the next call takes as `seen`).
    gaps: Mapping[int, datetime] = field(default_factory=dict)
    fill: tuple[int, ...] = ()  # nonces to fill now, lowest first
    new: tuple[int, ...] = ()  # gaps first seen by this call


def plan(
    chain_latest: int,
    chain_pending: int,
    holders: Iterable[Holder],
    seen: Mapping[int, datetime],
    now: datetime,
    wait_s: float,
) -> Plan:
    """The gaps of one key on one chain, and which of them to fill now.

    chain_latest: the key's nonce on chain (mined transactions); chain_pending:
    with the node's contiguous pending ones — a nonce below it is already in
    the mempool, whoever sent it, and will be mined. A gap is a nonce from
    there up to the highest nonce a live payout holds, that no live payout
    holds: below no live payout nothing waits (a later allocation takes it)."""
    assert wait_s >= 0 and chain_latest >= 0 and chain_pending >= 0
    holders = list(holders)
    live = {h.nonce for h in holders if h.live}
    low = max(chain_latest, chain_pending)
    top = max(live, default=low)
    # When a fill that did not stand (failed, cancelled) was last made for the nonce.
    tried: dict[int, datetime] = {}
    for h in holders:
        if h.fill and not h.live and h.create_time is not None:
            tried[h.nonce] = max(h.create_time, tried.get(h.nonce, h.create_time))
    wait = timedelta(seconds=wait_s)
    gaps: dict[int, datetime] = {}
    fill: list[int] = []
    new: list[int] = []
    for nonce in range(low, top):
        if nonce in live:
            continue
        first = seen.get(nonce)
        if first is None:
            first = now
            new.append(nonce)
        gaps[nonce] = first
        since = max(first, tried.get(nonce, first))
        if now - since >= wait:
            fill.append(nonce)
    out = Plan(gaps, tuple(fill), tuple(new))
    _check(out, live, low, top)
    return out


def _check(out: Plan, live: set[int], low: int, top: int) -> None:
    """What must hold of every plan, and what must never happen."""
    # Never a fill for a nonce a live payout (a fill included) holds.
    assert not set(out.fill) & live, (out.fill, live)
    # Never two fills for one nonce, and only for gaps inside [low, top).
    assert len(set(out.fill)) == len(out.fill) and list(out.fill) == sorted(out.fill)
    assert set(out.fill) <= set(out.gaps) and all(low <= n < top for n in out.gaps)
    assert set(out.new) <= set(out.gaps)
