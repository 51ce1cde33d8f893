"""The one place that decides an invoice's state and flags.

`decide` is pure: given where an invoice stands and one event, it returns the
invoice as it now stands and the steps it took. The core applies the steps
and writes one event per step; nothing else writes an invoice's state.

Funds are the invoice's observed payments summed by how settled they are.
Decisions are made from these sums, never from deltas, so applying the same
observation twice changes nothing and a reorg followed by re-inclusion lands
where no reorg would have.

States, as merchants see them:

    awaiting_payment → detected → confirming → paid | overpaid
    awaiting_payment → expired (nothing seen by the deadline)
    detected/confirming → underpaid (deadline passed with confirmed funds
                                     short of due - tolerance)
    awaiting_payment → cancelled (merchant, before any funds)
    paid | overpaid | underpaid → refunded (a full refund settled)

Funds that arrive after the deadline (inside the monitoring window, which the
core enforces by keeping the address watched) move an expired or underpaid
invoice on again, flagged paid_late: never lost, never silently ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
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


class Flag(enum.StrEnum):
    PAID_LATE = "paid_late"
    PAID_PARTIAL = "paid_partial"
    PAID_OVER = "paid_over"
    DUPLICATE = "duplicate"
    WRONG_ASSET = "wrong_asset"
    MARKED = "marked"


# Where each state stands on the way to being paid; a forward move passes
# through every state in between so consumers see each milestone in order.
_RANK = {
    State.AWAITING_PAYMENT: 0,
    State.EXPIRED: 0,
    State.DETECTED: 1,
    State.UNDERPAID: 1,
    State.CONFIRMING: 2,
    State.PAID: 3,
    State.OVERPAID: 3,
}
_FORWARD = (State.DETECTED, State.CONFIRMING)
# No payment can move these: a refund closed it, the merchant cancelled it
# before any funds, or an operator marked it.
_CLOSED = frozenset({State.CANCELLED, State.REFUNDED})
_SETTLED = frozenset({State.PAID, State.OVERPAID})
# Asked by other areas (core/payouts): what a refund may draw on, and whose
# payment is settled, so its deposit address may be swept.
REFUNDABLE = _SETTLED | {State.UNDERPAID}
FUNDS_SETTLED = _SETTLED | {State.UNDERPAID, State.REFUNDED}


@dataclass(frozen=True)
class Funds:
    """An invoice's payments, in base units, by how settled they are."""

    pending: int = 0  # seen outside a block (mempool), zero-conf tier only
    confirming: int = 0  # in a canonical block, below the threshold
    confirmed: int = 0  # at or above the threshold
    late: int = 0  # part of the above first seen after the deadline
    wrong_asset_transfers: int = 0  # transfers of another asset: recorded, never counted

    def __post_init__(self) -> None:
        assert min(self.pending, self.confirming, self.confirmed, self.late) >= 0, self
        assert self.wrong_asset_transfers >= 0, self
        assert self.late <= self.seen, self

    @property
    def seen(self) -> int:
        return self.pending + self.confirming + self.confirmed

    @property
    def in_block(self) -> int:
        return self.confirming + self.confirmed


@dataclass(frozen=True)
class FundsObserved:
    """The invoice's payments were re-summed after a block, an undo or a sighting."""

    funds: Funds


@dataclass(frozen=True)
class ClockTick:
    """The core's clock reached `now`."""

    now: datetime


@dataclass(frozen=True)
class Cancel:
    """The merchant withdraws the invoice."""


@dataclass(frozen=True)
class Mark:
    """An operator settles the invoice by hand (reason and actor are audited by the caller)."""

    state: State


@dataclass(frozen=True)
class RefundSettled:
    """A refund of `amount` base units confirmed on chain."""

    amount: int


Event = FundsObserved | ClockTick | Cancel | Mark | RefundSettled
MARKABLE = frozenset({State.PAID, State.EXPIRED})


@dataclass(frozen=True)
class Invoice:
    """What the decision needs to know about an invoice."""

    state: State
    amount_due: int
    expire_time: datetime
    tolerance: int = 0  # an underpayment up to this many base units counts as paid
    funds: Funds = Funds()
    flags: frozenset[Flag] = frozenset()
    refunded: int = 0

    def __post_init__(self) -> None:
        assert self.amount_due > 0, self
        assert 0 <= self.tolerance < self.amount_due, self

    @property
    def enough(self) -> int:
        """Funds that count as full payment."""
        return self.amount_due - self.tolerance


@dataclass(frozen=True)
class Step:
    """One state change (or flag change) and the event type announcing it."""

    state: State
    event_type: str


@dataclass(frozen=True)
class Refusal:
    """The event does not apply to the invoice as it stands."""

    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    invoice: Invoice
    steps: tuple[Step, ...] = ()
    refusal: Refusal | None = field(default=None)

    @property
    def changed(self) -> bool:
        return bool(self.steps)


def decide(invoice: Invoice, event: Event) -> Decision:
    match event:
        case FundsObserved(funds):
            decision = _on_funds(invoice, funds)
        case ClockTick(now):
            decision = _on_tick(invoice, now)
        case Cancel():
            decision = _on_cancel(invoice)
        case Mark(state):
            decision = _on_mark(invoice, state)
        case RefundSettled(amount):
            decision = _on_refund(invoice, amount)
    _check(invoice, decision)
    return decision


def _derived_flags(invoice: Invoice, funds: Funds, state: State) -> frozenset[Flag]:
    """Flags that follow from the facts; MARKED is the only remembered one."""
    flags = set(invoice.flags & {Flag.MARKED})
    if funds.late > 0:
        flags.add(Flag.PAID_LATE)
    if funds.wrong_asset_transfers > 0:
        flags.add(Flag.WRONG_ASSET)
    if 0 < funds.seen < invoice.enough:
        flags.add(Flag.PAID_PARTIAL)
    if funds.confirmed > invoice.amount_due and state in _SETTLED | _CLOSED:
        flags.add(Flag.PAID_OVER)
    # A second full payment on top of the first.
    if funds.confirmed - invoice.amount_due >= invoice.enough:
        flags.add(Flag.DUPLICATE)
    return frozenset(flags)


def _target(invoice: Invoice, funds: Funds) -> State:
    """Where the funds alone put an invoice that payments may still move."""
    if funds.confirmed >= invoice.enough:
        return State.OVERPAID if funds.confirmed > invoice.amount_due else State.PAID
    if funds.in_block >= invoice.enough:
        return State.CONFIRMING
    if funds.seen > 0:
        # Partial funds: an expired invoice with confirmed funds short of due is underpaid.
        if invoice.state in {State.UNDERPAID, State.EXPIRED} and funds.confirmed > 0:
            return State.UNDERPAID
        return State.DETECTED
    if invoice.state in {State.EXPIRED, State.UNDERPAID}:
        return State.EXPIRED  # past the deadline with nothing (left) counted
    return State.AWAITING_PAYMENT


def _step_event(state: State, flags: frozenset[Flag]) -> str:
    if state in _SETTLED and Flag.PAID_LATE in flags:
        return "invoice.paid_late"
    return f"invoice.{state.value}"


def _on_funds(invoice: Invoice, funds: Funds) -> Decision:
    if invoice.state in _CLOSED or Flag.MARKED in invoice.flags:
        # Recorded by the caller as payments; an operator's or refund's word stands.
        return Decision(replace(invoice, funds=funds))
    target = _target(invoice, funds)
    flags = _derived_flags(invoice, funds, target)
    moved = replace(invoice, state=target, funds=funds, flags=flags)
    here, there = _RANK[invoice.state], _RANK[target]
    if there > here:
        path = [s for s in _FORWARD if here < _RANK[s] < there] + [target]
        steps = tuple(Step(s, _step_event(s, flags)) for s in path)
    elif there < here or (target is not invoice.state and _lost_funds(invoice.funds, funds)):
        # Counted funds left the canonical chain: move back in one step.
        steps = (Step(target, "payment.reorged"),)
    elif target is not invoice.state:
        steps = (Step(target, _step_event(target, flags)),)
    elif flags != invoice.flags:
        steps = (Step(target, "invoice.flagged"),)
    else:
        steps = ()
    return Decision(moved, steps)


def _lost_funds(before: Funds, after: Funds) -> bool:
    return after.in_block < before.in_block or after.seen < before.seen


def _on_tick(invoice: Invoice, now: datetime) -> Decision:
    if now < invoice.expire_time:
        return Decision(invoice)
    funds = invoice.funds
    if invoice.state is State.AWAITING_PAYMENT and funds.seen == 0:
        expired = replace(invoice, state=State.EXPIRED)
        return Decision(expired, (Step(State.EXPIRED, "invoice.expired"),))
    # Short and out of time: whatever is confirmed is all the invoice will get
    # on time. Unconfirmed partial funds are waited for; they decide then.
    if (
        invoice.state in {State.DETECTED, State.CONFIRMING}
        and Flag.MARKED not in invoice.flags
        and 0 < funds.confirmed < invoice.enough
        and funds.pending + funds.confirming == 0
    ):
        short = replace(invoice, state=State.UNDERPAID)
        return Decision(short, (Step(State.UNDERPAID, "invoice.underpaid"),))
    return Decision(invoice)


def _on_cancel(invoice: Invoice) -> Decision:
    if invoice.state is not State.AWAITING_PAYMENT or invoice.funds.seen > 0:
        return Decision(
            invoice,
            refusal=Refusal(
                "INVOICE_NOT_CANCELLABLE",
                f"only an invoice awaiting payment with no funds seen can be cancelled; it is {invoice.state.value}",
            ),
        )
    cancelled = replace(invoice, state=State.CANCELLED)
    return Decision(cancelled, (Step(State.CANCELLED, "invoice.cancelled"),))


def _on_mark(invoice: Invoice, state: State) -> Decision:
    if state not in MARKABLE:
        return Decision(
            invoice,
            refusal=Refusal(
                "MARK_STATE_INVALID", f"an invoice can be marked {' or '.join(sorted(MARKABLE))}"
            ),
        )
    if invoice.state in _CLOSED:
        return Decision(
            invoice,
            refusal=Refusal("INVOICE_CLOSED", f"a {invoice.state.value} invoice cannot be marked"),
        )
    if invoice.state is state and Flag.MARKED in invoice.flags:
        return Decision(invoice)  # marked so already: a retry
    marked = replace(invoice, state=state, flags=invoice.flags | {Flag.MARKED})
    return Decision(marked, (Step(state, "invoice.marked"),))


def _on_refund(invoice: Invoice, amount: int) -> Decision:
    assert amount > 0
    refunded = invoice.refunded + amount
    if invoice.state not in _SETTLED | {State.UNDERPAID}:
        return Decision(
            invoice,
            refusal=Refusal(
                "INVOICE_NOT_REFUNDABLE", f"a {invoice.state.value} invoice has nothing to refund"
            ),
        )
    if refunded > invoice.funds.confirmed:
        return Decision(
            invoice,
            refusal=Refusal(
                "REFUND_EXCEEDS_RECEIVED",
                f"refunds would total {refunded}, more than the {invoice.funds.confirmed} received",
            ),
        )
    if refunded == invoice.funds.confirmed:
        done = replace(invoice, state=State.REFUNDED, refunded=refunded)
        return Decision(done, (Step(State.REFUNDED, "invoice.refunded"),))
    return Decision(replace(invoice, refunded=refunded))


def _check(before: Invoice, decision: Decision) -> None:
    """What must hold after every decision, and what must never happen."""
    after = decision.invoice
    if decision.refusal is not None:
        assert after == before and not decision.steps
        return
    if Flag.MARKED not in after.flags and after.state in _SETTLED:
        assert after.funds.confirmed >= after.enough, (before, decision)
    if after.state is State.OVERPAID and Flag.MARKED not in after.flags:
        assert after.funds.confirmed > after.amount_due
    if after.state is State.EXPIRED:
        assert after.funds.seen == 0 or Flag.MARKED in after.flags
    if before.state in _CLOSED:
        assert after.state is before.state
    if decision.steps:
        assert decision.steps[-1].state is after.state
