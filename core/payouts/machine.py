"""The payout state machine: the one place that decides a payout's next state.

Pure (no I/O): the worker and the API load a payout, ask `decide` with an
event, and write what it returns in one transaction, together with the
effects it names (ledger post or void of the hold, release of a tentative
nonce, an outbox event).

    created ─NonceAllocated→ signing ─Signed→ signed ─Broadcasted→ broadcast ─Landed→ confirmed | failed
       │                       │  ▲                                    │  ▲                   │
       │               SignRefused │ Approved                    Replace │  └──── Reorged ─────┘
       │                       ▼  │                                    ▼     (until Finalized)
       └─Cancel→ cancelled ← waiting_approval                     signing (replacing)

Confirmed and failed (a reverted landing) settle the payout's outcome, but a
landing is final only past the chain's finality depth: until `Finalized`, a
reorg that removes the landed transaction (`Reorged`) sends the payout back
to broadcast, where the same signed bytes (same nonce) are sent again.

Invariants (asserted in `_check` after every decision, property-tested in
tests/unit/test_payout_machine.py):
- once a transaction is signed, the payout's nonce never changes: every
  candidate (original and replacements) spends the same nonce, so at most one
  of them can ever land — the payout cannot be paid twice;
- confirmed only after a Landed(succeeded) for one of its own candidates;
- the ledger hold is released (posted or voided) exactly once, on first
  entering a final state; a reorg does not re-open it: the writer reverses the
  landing's booking (`undo`) and books the next landing (`rebook`) instead;
- nothing finalized ever changes again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import assert_never


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
# What the worker moves forward, in the order a payout passes through them.
ACTIVE = (State.CREATED, State.SIGNING, State.WAITING_APPROVAL, State.SIGNED, State.BROADCAST)
# Landed outcomes that a reorg can still undo until finalized.
LANDED = frozenset({State.CONFIRMED, State.FAILED})
assert set(ACTIVE) | FINAL == set(State) and not set(ACTIVE) & FINAL
assert LANDED <= FINAL


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
    reorgs: int = 0  # landings undone by a reorg so far
    finalized: bool = False  # the landing is past the chain's finality depth

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
class Renewed:
    """A fresh sign request body (the last one expired) at `nonce`: the same
    nonce while signing, any free one while waiting for approvals."""

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


@dataclass(frozen=True)
class Reorged:
    """The landed transaction is no longer on the canonical chain."""


@dataclass(frozen=True)
class Finalized:
    """The landed transaction is past the chain's finality depth."""


Event = (
    Cancel
    | NonceAllocated
    | Renewed
    | Signed
    | SignRefused
    | Approved
    | Broadcasted
    | Replace
    | Landed
    | NonceLost
    | Reorged
    | Finalized
)


@dataclass(frozen=True)
class Decision:
    payout: Payout
    hold: Hold | None = None  # release the ledger hold this way
    release_nonce: bool = False  # give the tentative nonce back to the pool
    event_type: str | None = None  # outbox event to announce
    refusal: str | None = None  # the event does not apply; nothing changes
    # After a reorg: reverse the booking of the landing that was undone
    # (POST: it had been sent; VOID: it had been returned to its sources) ...
    undo: Hold | None = None
    # ... and book the next landing of a payout whose hold was released before.
    rebook: Hold | None = None

    @property
    def changed(self) -> bool:
        return self.refusal is None


def _refuse(p: Payout, why: str) -> Decision:
    return Decision(p, refusal=why)


def _final(p: Payout, state: State, hold: Hold, reason: str = "", **changes: object) -> Decision:
    done = replace(p, state=state, hold_released=True, replacing=False, reason=reason, **changes)  # type: ignore[arg-type]
    if p.hold_released:
        # A landing after a reorg: the hold was released at the first one.
        return Decision(done, rebook=hold, event_type=f"payout.{state.value}")
    return Decision(done, hold=hold, event_type=f"payout.{state.value}")


def decide(p: Payout, event: Event) -> Decision:
    decision = _decide(p, event)
    _check(p, event, decision)
    return decision


def _decide(p: Payout, event: Event) -> Decision:
    if p.finalized:
        return _refuse(p, "PAYOUT_FINAL")
    match event:
        case Reorged():
            if p.state not in LANDED or p.landed is None:
                return _refuse(p, "NOT_LANDED")
            undo = Hold.POST if p.state is State.CONFIRMED else Hold.VOID
            back = replace(p, state=State.BROADCAST, landed=None, reason="", reorgs=p.reorgs + 1)
            return Decision(back, undo=undo, event_type="payout.reorged")
        case Finalized():
            if p.state not in LANDED or p.landed is None:
                return _refuse(p, "NOT_LANDED")
            return Decision(replace(p, finalized=True))
        case _ if p.state in FINAL:
            return _refuse(p, "PAYOUT_FINAL")
        case Cancel():
            if p.state not in CANCELLABLE:
                return _refuse(p, "PAYOUT_NOT_CANCELLABLE")
            # A waiting payout's nonce was already given back when it started waiting.
            return _final(p, State.CANCELLED, Hold.VOID, "cancelled", nonce=None)
        case NonceAllocated(nonce):
            if p.state is not State.CREATED:
                return _refuse(p, "NOT_CREATED")
            return Decision(replace(p, state=State.SIGNING, nonce=nonce))
        case Renewed(nonce):
            if p.state is State.SIGNING:
                if nonce != p.nonce:
                    return _refuse(p, "NONCE_MISMATCH")
                return Decision(p)
            if p.state is State.WAITING_APPROVAL:
                return Decision(replace(p, nonce=nonce))
            return _refuse(p, "NOT_SIGNING")
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
        case _:
            assert_never(event)


def _check(before: Payout, event: Event, d: Decision) -> None:
    """What must hold after every decision, and what must never happen."""
    after = d.payout
    if d.refusal is not None:
        assert after == before and d.hold is d.undo is d.rebook is None and not d.release_nonce
        return
    # The nonce is fixed once signed: every candidate spends the same one.
    if before.nonce_fixed:
        assert after.nonce == before.nonce, (before, event, after)
    # Candidates are only ever added, never dropped or reordered.
    assert after.candidates[: len(before.candidates)] == before.candidates
    # The hold is released once, on first entering a final state, and never re-opened.
    if d.hold is not None:
        assert not before.hold_released and after.hold_released and after.state in FINAL
    assert after.hold_released == (after.state in FINAL or after.reorgs > 0), (before, event)
    assert before.hold_released <= after.hold_released
    # A booking after a reorg only for a payout whose hold is already released.
    if d.rebook is not None:
        assert before.reorgs > 0 and before.hold_released and after.state in LANDED | FINAL
    if d.undo is not None:
        assert after.reorgs == before.reorgs + 1 and after.state is State.BROADCAST
    assert after.reorgs >= before.reorgs
    # Confirmed only for one of its own candidates.
    if after.state is State.CONFIRMED:
        assert after.landed is not None and after.landed in after.candidates
    if after.finalized:
        assert after.state in LANDED and after.landed is not None
    # A tentative nonce goes back to the pool only while nothing was signed with it.
    if d.release_nonce:
        assert not before.nonce_fixed
