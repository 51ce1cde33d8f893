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
    refunded → paid | overpaid | underpaid (a counted refund left the chain:
                                             invoice.refund_reversed)

Funds that arrive after the deadline, inside the monitoring window, move an
expired or underpaid invoice on again, flagged paid_late.

Every unit accounted for (docs/architecture.md): funds are never lost nor
silently ignored, whatever the invoice's state. On a closed invoice —
cancelled, refunded, marked by an operator — and funds first seen past the
monitoring window, they move no state: they are *parked*, flagged (paid_late,
or duplicate after a refund or a mark as paid), announced (invoice.late_funds,
payment.reorged if they leave the chain) and refundable (`refundable`). Funds
that grow an open invoice without moving its state are announced too
(invoice.payment_received). Cancel and Mark are decided against the funds
seen: a cancel or a mark as expired with funds is refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import assert_never

from core import reasons


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
# No payment can move these: a refund closed it, or the merchant cancelled it
# before any funds (an operator's mark closes an invoice too: Flag.MARKED).
_CLOSED = frozenset({State.CANCELLED, State.REFUNDED})
_SETTLED = frozenset({State.PAID, State.OVERPAID})
# Funds may still move these; nothing in them is refundable yet.
_OPEN = frozenset({State.AWAITING_PAYMENT, State.DETECTED, State.CONFIRMING})
# Where a deposit address may hold funds at rest: settled, or parked on a
# closed invoice (sweeps read this; an expired or cancelled one only with funds).
AT_REST = frozenset({State.PAID, State.OVERPAID, State.UNDERPAID, State.REFUNDED})
PARKING = frozenset({State.EXPIRED, State.CANCELLED})

# Event types, one per state an invoice reaches, and the announcements of funds.
# An invoice reaches awaiting_payment when it is created (a reorg that moves it
# back is payment.reorged); every other state is announced as invoice.<state>.
STATE_EVENT = {
    s: "invoice.created" if s is State.AWAITING_PAYMENT else f"invoice.{s.value}" for s in State
}
EVENT_TYPES = (
    *STATE_EVENT.values(),
    "invoice.paid_late",
    "invoice.marked",
    "invoice.flagged",
    "invoice.payment_received",
    "invoice.late_funds",
    "payment.reorged",
    "invoice.funds_owed",
    "invoice.refund_reversed",
)
# Announced by the settlement's writer (core/ledger/settlement.py), not a step
# of `decide`: a reorg took back funds already refunded or paid out.
FUNDS_OWED = "invoice.funds_owed"


@dataclass(frozen=True)
class Funds:
    """An invoice's payments, in base units, by how settled they are."""

    pending: int = 0  # seen outside a block (mempool), zero-conf tier only
    confirming: int = 0  # in a canonical block, below the threshold
    confirmed: int = 0  # at or above the threshold
    late: int = 0  # part of the above first seen after the deadline
    wrong_asset_transfers: int = 0  # transfers of another asset: recorded, never counted
    outside: int = 0  # part of `late` first seen after the monitoring window: parked

    def __post_init__(self) -> None:
        assert min(self.pending, self.confirming, self.confirmed, self.late) >= 0, self
        assert self.wrong_asset_transfers >= 0, self
        assert 0 <= self.outside <= self.late <= self.seen, self

    @property
    def seen(self) -> int:
        return self.pending + self.confirming + self.confirmed

    @property
    def in_block(self) -> int:
        return self.confirming + self.confirmed

    def inside(self) -> Funds:
        """The funds that may move the state: those first seen inside the window.

        Funds past the window are the newest, so they are taken from the least
        settled first (a payment first seen past the window that confirmed while
        an older one was still confirming is a case no window of days meets).
        """
        if self.outside == 0:
            return self
        left = self.outside
        take_pending = min(left, self.pending)
        left -= take_pending
        take_confirming = min(left, self.confirming)
        left -= take_confirming
        assert left <= self.confirmed, self
        return Funds(
            pending=self.pending - take_pending,
            confirming=self.confirming - take_confirming,
            confirmed=self.confirmed - left,
            late=self.late - self.outside,
            wrong_asset_transfers=self.wrong_asset_transfers,
        )


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


@dataclass(frozen=True)
class RefundReversed:
    """A refund the invoice counted left the canonical chain (a reorg removed
    its landed transaction): it counts no more until it lands again."""

    amount: int


Event = FundsObserved | ClockTick | Cancel | Mark | RefundSettled | RefundReversed
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

    @property
    def closed(self) -> bool:
        """No payment moves it: cancelled, refunded, or marked by an operator."""
        return self.state in _CLOSED or Flag.MARKED in self.flags


def refundable(invoice: Invoice) -> int:
    """Base units a refund may still return: confirmed funds not yet refunded,
    once no payment can move the invoice any more (settled, underpaid, closed,
    or expired with funds parked past its window). 0 while funds may still count."""
    return refundable_of(
        invoice.state, Flag.MARKED in invoice.flags, invoice.funds.confirmed, invoice.refunded
    )


def refundable_of(state: State, marked: bool, confirmed: int, refunded: int) -> int:
    """`refundable` from an invoice's stored parts (for readers of rows)."""
    assert confirmed >= 0 and refunded >= 0, (confirmed, refunded)
    if state in _OPEN and not marked:
        return 0
    return max(confirmed - refunded, 0)


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
        case RefundReversed(amount):
            decision = _on_refund_reversed(invoice, amount)
        case _:
            assert_never(event)
    _check(invoice, decision, isinstance(event, RefundReversed))
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
    # Paid late has its own type; overpaid late is invoice.overpaid with the flag
    # set (every state reached has its own type, the flag says when).
    if state is State.PAID and Flag.PAID_LATE in flags:
        return "invoice.paid_late"
    return STATE_EVENT[state]


def _grew(before: Funds, after: Funds) -> bool:
    """New units seen, or seen units newly confirmed (so newly refundable)."""
    return after.seen > before.seen or after.confirmed > before.confirmed


def _on_funds(invoice: Invoice, funds: Funds) -> Decision:
    if invoice.closed:
        return _park(invoice, funds)
    inside = funds.inside()
    target = _target(invoice, inside)
    flags = _derived_flags(invoice, inside, target)
    if funds.outside > 0:
        flags |= {Flag.PAID_LATE}
    moved = replace(invoice, state=target, funds=funds, flags=flags)
    was = invoice.funds.inside()
    here, there = _RANK[invoice.state], _RANK[target]
    if there > here:
        path = [s for s in _FORWARD if here < _RANK[s] < there] + [target]
        steps = tuple(Step(s, _step_event(s, flags)) for s in path)
    elif there < here or (target is not invoice.state and _lost_funds(was, inside)):
        # Counted funds left the canonical chain: move back in one step.
        steps = (Step(target, "payment.reorged"),)
    elif target is not invoice.state:
        steps = (Step(target, _step_event(target, flags)),)
    elif funds.outside > invoice.funds.outside or (
        funds.outside > 0 and _grew(invoice.funds, funds) and not _grew(was, inside)
    ):
        # Past the monitoring window: parked beside what the invoice counted.
        steps = (Step(target, "invoice.late_funds"),)
    elif inside.seen > was.seen:
        # More funds without a move (a second partial payment): still announced.
        steps = (Step(target, "invoice.payment_received"),)
    elif _lost_funds(invoice.funds, funds):
        # Part of the funds left the chain without moving the state: announced.
        steps = (Step(target, "payment.reorged"),)
    elif flags != invoice.flags:
        steps = (Step(target, "invoice.flagged"),)
    else:
        steps = ()
    return Decision(moved, steps)


def _park(invoice: Invoice, funds: Funds) -> Decision:
    """Funds on a closed invoice: recorded and announced, never moving its state.

    A refund's or an operator's word on the state stands; what arrives after it
    is flagged — duplicate after a full refund or a mark as paid (the invoice
    was settled once already), paid_late otherwise — and left refundable.
    """
    before = invoice.funds
    flags = set(invoice.flags)
    if funds.wrong_asset_transfers > 0:
        flags.add(Flag.WRONG_ASSET)
    if funds.seen > before.seen:
        settled_once = invoice.state is State.REFUNDED or (
            Flag.MARKED in invoice.flags and invoice.state in _SETTLED
        )
        flags.add(Flag.DUPLICATE if settled_once else Flag.PAID_LATE)
    parked = replace(invoice, funds=funds, flags=frozenset(flags))
    if _grew(before, funds):
        steps: tuple[Step, ...] = (Step(invoice.state, "invoice.late_funds"),)
    elif _lost_funds(before, funds):
        steps = (Step(invoice.state, "payment.reorged"),)
    elif parked.flags != invoice.flags:
        steps = (Step(invoice.state, "invoice.flagged"),)
    else:
        steps = ()
    return Decision(parked, steps)


def _lost_funds(before: Funds, after: Funds) -> bool:
    return after.in_block < before.in_block or after.seen < before.seen


def _on_tick(invoice: Invoice, now: datetime) -> Decision:
    if now < invoice.expire_time:
        return Decision(invoice)
    funds = invoice.funds.inside()  # funds parked past the window decide nothing
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
    # Decided against the funds seen: the caller holds the chain's lock, so no
    # block can record a payment between this look and the commit.
    if invoice.state is not State.AWAITING_PAYMENT or invoice.funds.seen > 0:
        return Decision(
            invoice,
            refusal=Refusal(
                reasons.INVOICE_NOT_CANCELLABLE,
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
                reasons.MARK_STATE_INVALID,
                f"an invoice can be marked {' or '.join(sorted(MARKABLE))}",
            ),
        )
    if invoice.state in _CLOSED:
        return Decision(
            invoice,
            refusal=Refusal(
                reasons.INVOICE_CLOSED, f"a {invoice.state.value} invoice cannot be marked"
            ),
        )
    if state is State.EXPIRED and invoice.funds.seen > 0:
        # Nothing expires with funds seen: marking it so would strand them.
        return Decision(
            invoice,
            refusal=Refusal(
                reasons.INVOICE_HAS_FUNDS,
                f"an invoice with {invoice.funds.seen} base units seen cannot be marked expired",
            ),
        )
    if invoice.state is state and Flag.MARKED in invoice.flags:
        return Decision(invoice)  # marked so already: a retry
    marked = replace(invoice, state=state, flags=invoice.flags | {Flag.MARKED})
    return Decision(marked, (Step(state, "invoice.marked"),))


def _on_refund(invoice: Invoice, amount: int) -> Decision:
    assert amount > 0
    room = refundable(invoice)
    if room == 0:
        return Decision(
            invoice,
            refusal=Refusal(
                reasons.INVOICE_NOT_REFUNDABLE,
                f"a {invoice.state.value} invoice has nothing to refund",
            ),
        )
    refunded = invoice.refunded + amount
    if amount > room:
        return Decision(
            invoice,
            refusal=Refusal(
                reasons.REFUND_EXCEEDS_RECEIVED,
                f"refunds would total {refunded}, more than the {invoice.funds.confirmed} received",
            ),
        )
    if refunded == invoice.funds.confirmed and invoice.state in _SETTLED | {State.UNDERPAID}:
        done = replace(invoice, state=State.REFUNDED, refunded=refunded)
        return Decision(done, (Step(State.REFUNDED, "invoice.refunded"),))
    # A part refunded, or parked funds of a closed invoice returned: the state stands.
    return Decision(replace(invoice, refunded=refunded))


def _on_refund_reversed(invoice: Invoice, amount: int) -> Decision:
    """The refund's real outcome decides: a refunded invoice whose refund left the
    chain stands where its funds put it again, and the amount is refundable again
    once the refund is given up (the payout service counts it in progress until then)."""
    assert amount > 0
    if amount > invoice.refunded:
        return Decision(
            invoice,
            refusal=Refusal(
                reasons.INVOICE_NOT_REFUNDABLE,
                f"the invoice counts {invoice.refunded} refunded, not {amount}",
            ),
        )
    state = invoice.state
    if state is State.REFUNDED:
        if Flag.MARKED in invoice.flags and invoice.funds.confirmed < invoice.enough:
            state = State.PAID  # the operator's mark settled it, not the funds
        else:
            # Past payment already (only a settled or underpaid invoice is refunded).
            state = _target(replace(invoice, state=State.UNDERPAID), invoice.funds.inside())
    back = replace(invoice, state=state, refunded=invoice.refunded - amount)
    return Decision(back, (Step(state, "invoice.refund_reversed"),))


def _check(before: Invoice, decision: Decision, refund_reversed: bool = False) -> None:
    """What must hold after every decision, and what must never happen."""
    after = decision.invoice
    if decision.refusal is not None:
        assert after == before and not decision.steps
        return
    if refund_reversed:
        # Only the refunded amount (and a refunded state) moves, and it is announced.
        assert after.refunded < before.refunded and after.funds == before.funds, decision
        assert after.state is before.state or before.state is State.REFUNDED, decision
        assert decision.steps and after.flags == before.flags, decision
        return
    if Flag.MARKED not in after.flags and after.state in _SETTLED:
        assert after.funds.confirmed >= after.enough, (before, decision)
    if after.state is State.OVERPAID and Flag.MARKED not in after.flags:
        assert after.funds.confirmed > after.amount_due
    if after.state is State.EXPIRED:
        assert after.funds.inside().seen == 0 or Flag.MARKED in after.flags
    if before.state in _CLOSED:
        assert after.state is before.state
    if before.closed:
        assert after.closed, (before, decision)
    if decision.steps:
        assert decision.steps[-1].state is after.state
        assert all(s.event_type in EVENT_TYPES for s in decision.steps), decision
    # Every unit accounted for: nothing refunded beyond what was received, and
    # new funds on an invoice never pass unannounced.
    assert after.refunded >= 0, decision
    assert after.refunded <= before.funds.confirmed or after.refunded == before.refunded
    if after.funds.seen != before.funds.seen:
        assert decision.steps, (before, decision)
