"""The one place that decides an invoice's state.

`decide` is pure: given where an invoice stands and one event, it returns the
steps the invoice takes. The core applies the steps and writes one event per
step; nothing else writes an invoice's state.

Funds are the invoice's observed payments summed by how settled they are.
Decisions are made from these sums, never from deltas, so applying the same
observation twice changes nothing and a reorg followed by re-inclusion lands
where no reorg would have.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class State(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    DETECTED = "detected"
    CONFIRMING = "confirming"
    PAID = "paid"
    UNDERPAID = "underpaid"
    OVERPAID = "overpaid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


# The forward path of a payment; a jump forward passes through each state on
# the way so that consumers see every milestone, in order.
_PATH = (State.AWAITING_PAYMENT, State.DETECTED, State.CONFIRMING, State.PAID)
_FINAL = frozenset(
    {State.EXPIRED, State.CANCELLED, State.REFUNDED, State.UNDERPAID, State.OVERPAID}
)


@dataclass(frozen=True)
class Funds:
    """An invoice's payments, in base units, by how settled they are."""

    pending: int = 0  # seen outside a block (mempool)
    confirming: int = 0  # in a canonical block, below the threshold
    confirmed: int = 0  # at or above the threshold

    def __post_init__(self) -> None:
        assert self.pending >= 0 and self.confirming >= 0 and self.confirmed >= 0, self

    @property
    def seen(self) -> int:
        return self.pending + self.confirming + self.confirmed

    @property
    def in_block(self) -> int:
        return self.confirming + self.confirmed


@dataclass(frozen=True)
class FundsObserved:
    """The invoice's payments were re-summed after a block, undo or sighting."""

    funds: Funds


@dataclass(frozen=True)
class ClockTick:
    """The core's clock reached `now`."""

    now: datetime


Event = FundsObserved | ClockTick


@dataclass(frozen=True)
class Invoice:
    """What the decision needs to know about an invoice."""

    state: State
    amount_due: int
    expire_time: datetime
    funds: Funds = Funds()

    def __post_init__(self) -> None:
        assert self.amount_due > 0, self


@dataclass(frozen=True)
class Step:
    """One state change and the event type it is announced with."""

    state: State
    event_type: str


@dataclass(frozen=True)
class Decision:
    invoice: Invoice
    steps: tuple[Step, ...]

    @property
    def changed(self) -> bool:
        return bool(self.steps)


def _target(due: int, funds: Funds) -> State:
    if funds.confirmed >= due:
        return State.PAID
    if funds.in_block > 0:
        return State.CONFIRMING
    if funds.seen > 0:
        return State.DETECTED
    return State.AWAITING_PAYMENT


def _event_type(state: State) -> str:
    return f"invoice.{state.value}"


def decide(invoice: Invoice, event: Event) -> Decision:
    if isinstance(event, ClockTick):
        return _on_tick(invoice, event)
    return _on_funds(invoice, event.funds)


def _on_tick(invoice: Invoice, tick: ClockTick) -> Decision:
    # Only an invoice that has seen nothing expires; one with funds on the way
    # is carried to its end by those funds.
    if invoice.state is State.AWAITING_PAYMENT and tick.now >= invoice.expire_time:
        expired = Invoice(State.EXPIRED, invoice.amount_due, invoice.expire_time, invoice.funds)
        return Decision(expired, (Step(State.EXPIRED, _event_type(State.EXPIRED)),))
    return Decision(invoice, ())


def _on_funds(invoice: Invoice, funds: Funds) -> Decision:
    updated = Invoice(invoice.state, invoice.amount_due, invoice.expire_time, funds)
    if invoice.state in _FINAL:
        # Funds to a closed invoice are recorded by the caller; the state stays.
        return Decision(updated, ())
    target = _target(invoice.amount_due, funds)
    current = _PATH.index(invoice.state)
    wanted = _PATH.index(target)
    if wanted == current:
        return Decision(updated, ())
    if wanted > current:
        steps = tuple(Step(s, _event_type(s)) for s in _PATH[current + 1 : wanted + 1])
    else:
        # Counted funds left the canonical chain: move back in one step.
        steps = (Step(target, "payment.reorged"),)
    moved = Invoice(target, invoice.amount_due, invoice.expire_time, funds)
    assert moved.state is not State.PAID or funds.confirmed >= invoice.amount_due
    return Decision(moved, steps)
