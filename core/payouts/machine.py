"""The payout state machine: the one place that decides a payout's next state.

Pure (no I/O): the worker and the API load a payout, ask `decide` with an
event, and write what it returns in one transaction, together with the
effects it names (ledger post or void of the hold, release of a tentative
nonce, an outbox event).

    created ─NonceAllocated→ signing ─Signed→ signed ─Broadcasted→ broadcast ─Landed→ confirmed | failed
       │                       │  ▲                                    │
       │               SignRefused │ Approved                       Replace (same nonce, higher fee)
       │                       ▼  │                                    ▼
       └─Cancel→ cancelled ← waiting_approval                     signing (replacing)

Invariants (property-tested in tests/unit/test_payout_machine.py):
- once a transaction is signed, the payout's nonce never changes: every
  candidate (original and replacements) spends the same nonce, so at most one
  of them can ever land — the payout cannot be paid twice;
- confirmed only after a Landed(succeeded) for one of its own candidates;
- the ledger hold is released (posted or voided) exactly once, on entering a
  final state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class State(StrEnum):
    CREATED = "created"
    SIGNING = "signing"
    WAITING_APPROVAL = "waiting_approval"
    SIGNED = "signed"
    BROADCAST = "broadcast"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({State.CONFIRMED, State.FAILED, State.CANCELLED})
CANCELLABLE = frozenset({State.CREATED, State.WAITING_APPROVAL})


class Hold(StrEnum):
    """What to do with the ledger hold."""

    POST = "post"
    VOID = "void"


@dataclass(frozen=True)
class Payout:
    state: State = State.CREATED
    # Tentative until the first signature, fixed from then on.
    nonce: int | None = None
    candidates: tuple[str, ...] = ()  # every signed tx hash, oldest first
    landed: str | None = None
    replacing: bool = False  # signing a higher-fee replacement of a broadcast tx
    hold_released: bool = False
    reason: str = ""  # why it waits or failed

    @property
    def nonce_fixed(self) -> bool:
        return bool(self.candidates)


# -- events ---------------------------------------------------------------


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class NonceAllocated:
    nonce: int


@dataclass(frozen=True)
class Signed:
    tx_hash: str
    nonce: int


@dataclass(frozen=True)
class SignRefused:
    reason: str


@dataclass(frozen=True)
class Approved:
    nonce: int  # the nonce of the approved body, reclaimed for it


@dataclass(frozen=True)
class Broadcasted:
    pass


@dataclass(frozen=True)
class Replace:
    pass


@dataclass(frozen=True)
class Landed:
    tx_hash: str
    succeeded: bool


@dataclass(frozen=True)
class NonceLost:
    """The nonce was consumed on chain and none of our candidates is there."""


Event = (
    Cancel
    | NonceAllocated
    | Signed
    | SignRefused
    | Approved
    | Broadcasted
    | Replace
    | Landed
    | NonceLost
)


@dataclass(frozen=True)
class Decision:
    payout: Payout
    hold: Hold | None = None  # release the ledger hold this way
    release_nonce: bool = False  # give the tentative nonce back to the pool
    event_type: str | None = None  # outbox event to announce
    refusal: str | None = None  # the event does not apply; nothing changes

    @property
    def changed(self) -> bool:
        return self.refusal is None


def _refuse(p: Payout, why: str) -> Decision:
    return Decision(p, refusal=why)


def _final(p: Payout, state: State, hold: Hold, reason: str = "", **changes: object) -> Decision:
    if p.hold_released:  # unreachable from a non-final state; kept as a guard
        return _refuse(p, "HOLD_ALREADY_RELEASED")
    done = replace(p, state=state, hold_released=True, replacing=False, reason=reason, **changes)  # type: ignore[arg-type]
    return Decision(done, hold=hold, event_type=f"payout.{state.value}")


def decide(p: Payout, event: Event) -> Decision:
    if p.state in FINAL:
        return _refuse(p, "PAYOUT_FINAL")
    match event:
        case Cancel():
            if p.state not in CANCELLABLE:
                return _refuse(p, "PAYOUT_NOT_CANCELLABLE")
            # A waiting payout's nonce was already given back when it started waiting.
            return _final(p, State.CANCELLED, Hold.VOID, "cancelled", nonce=None)
        case NonceAllocated(nonce):
            if p.state is not State.CREATED:
                return _refuse(p, "NOT_CREATED")
            return Decision(replace(p, state=State.SIGNING, nonce=nonce))
        case Signed(tx_hash, nonce):
            if p.state is not State.SIGNING:
                return _refuse(p, "NOT_SIGNING")
            if nonce != p.nonce:
                return _refuse(p, "NONCE_MISMATCH")
            if tx_hash in p.candidates:
                return _refuse(p, "ALREADY_SIGNED")
            signed = replace(
                p, state=State.SIGNED, candidates=(*p.candidates, tx_hash), replacing=False
            )
            return Decision(signed, event_type=None if p.replacing else "payout.signed")
        case SignRefused(reason):
            if p.state is not State.SIGNING:
                return _refuse(p, "NOT_SIGNING")
            if p.replacing:
                # The broadcast candidate still stands; the replacement is dropped.
                return Decision(replace(p, state=State.BROADCAST, replacing=False, reason=reason))
            waiting = replace(p, state=State.WAITING_APPROVAL, reason=reason)
            return Decision(waiting, release_nonce=True, event_type="payout.waiting_approval")
        case Approved(nonce):
            if p.state is not State.WAITING_APPROVAL:
                return _refuse(p, "NOT_WAITING")
            return Decision(replace(p, state=State.SIGNING, nonce=nonce, reason=""))
        case Broadcasted():
            if p.state is not State.SIGNED:
                return _refuse(p, "NOT_SIGNED")
            first = len(p.candidates) == 1
            return Decision(
                replace(p, state=State.BROADCAST),
                event_type="payout.broadcast" if first else None,
            )
        case Replace():
            if p.state is not State.BROADCAST:
                return _refuse(p, "NOT_BROADCAST")
            return Decision(replace(p, state=State.SIGNING, replacing=True))
        case Landed(tx_hash, succeeded):
            if not p.candidates:
                return _refuse(p, "NOTHING_SIGNED")
            if tx_hash not in p.candidates:
                return _refuse(p, "NOT_OUR_TRANSACTION")
            if succeeded:
                return _final(p, State.CONFIRMED, Hold.POST, landed=tx_hash)
            return _final(p, State.FAILED, Hold.VOID, "REVERTED", landed=tx_hash)
        case NonceLost():
            if not p.candidates:
                return _refuse(p, "NOTHING_SIGNED")
            return _final(p, State.FAILED, Hold.VOID, "NONCE_CONSUMED")
    raise AssertionError(f"unknown event {event!r}")


def bumped(old: int, percent: int = 12) -> int:
    """A replacement fee: at least +10% (what nodes require), rounded up."""
    return old + max(1, -(-old * percent // 100))
