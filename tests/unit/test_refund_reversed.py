"""A refund that leaves the canonical chain stops counting on its invoice
(issue 19): `RefundReversed` undoes exactly what `RefundSettled` did."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from core import reasons
from core.invoices.state import (
    Funds,
    FundsObserved,
    Invoice,
    RefundReversed,
    RefundSettled,
    State,
    decide,
    refundable,
)

DUE = 25_000_000
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)


def paid(confirmed: int) -> Invoice:
    start = Invoice(State.AWAITING_PAYMENT, DUE, EXPIRY)
    return decide(start, FundsObserved(Funds(confirmed=confirmed))).invoice


def test_a_full_refund_reversed_makes_the_invoice_paid_again() -> None:
    refunded = decide(paid(DUE), RefundSettled(DUE)).invoice
    assert refunded.state is State.REFUNDED and refundable(refunded) == 0
    back = decide(refunded, RefundReversed(DUE))
    assert back.invoice.state is State.PAID and back.invoice.refunded == 0
    assert [(s.state, s.event_type) for s in back.steps] == [
        (State.PAID, "invoice.refund_reversed")
    ]
    assert refundable(back.invoice) == DUE


def test_a_partial_refund_reversed_keeps_the_state_and_is_announced() -> None:
    over = paid(DUE + 5)
    part = decide(over, RefundSettled(5)).invoice
    back = decide(part, RefundReversed(5))
    assert back.invoice == over
    assert [s.event_type for s in back.steps] == ["invoice.refund_reversed"]


def test_a_refund_the_invoice_does_not_count_is_refused() -> None:
    refused = decide(paid(DUE), RefundReversed(1))
    assert refused.refusal is not None and refused.refusal.reason == reasons.INVOICE_NOT_REFUNDABLE
    assert not refused.steps


def test_a_refunded_invoice_whose_payment_also_left_expires() -> None:
    refunded = decide(paid(DUE), RefundSettled(DUE)).invoice
    gone = decide(refunded, FundsObserved(Funds())).invoice  # parked: stays refunded
    assert gone.state is State.REFUNDED
    back = decide(gone, RefundReversed(DUE)).invoice
    assert back.state is State.EXPIRED and back.refunded == 0


@given(
    st.integers(min_value=DUE, max_value=3 * DUE),
    st.lists(st.integers(min_value=1, max_value=DUE), min_size=1, max_size=5),
)
def test_reversing_every_refund_lands_where_no_refund_was_made(
    confirmed: int, amounts: list[int]
) -> None:
    start = paid(confirmed)
    invoice = start
    counted: list[int] = []
    for amount in amounts:
        decision = decide(invoice, RefundSettled(amount))
        if decision.refusal is None:
            counted.append(amount)
            invoice = decision.invoice
    for amount in reversed(counted):
        decision = decide(invoice, RefundReversed(amount))
        assert decision.refusal is None and decision.steps
        invoice = decision.invoice
    assert invoice == start
