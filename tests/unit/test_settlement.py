"""Settlement targets: what should have left incoming for an invoice."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from core.invoices.state import Funds, Invoice, State
from core.ledger.settlement import Target, target

DUE = 25_000_000
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)


def invoice(state: State, confirmed: int) -> Invoice:
    return Invoice(state, DUE, EXPIRY, funds=Funds(confirmed=confirmed))


def test_paid_settles_the_amount_due_and_overpaid_the_excess_apart() -> None:
    assert target(invoice(State.PAID, DUE)) == Target(DUE, 0)
    assert target(invoice(State.OVERPAID, DUE + 7)) == Target(DUE, 7)


def test_an_invoice_moved_back_by_a_reorg_unsettles() -> None:
    assert target(invoice(State.CONFIRMING, DUE)) == Target(0, 0)
    assert target(invoice(State.AWAITING_PAYMENT, 0)) == Target(0, 0)


def test_merchant_and_refund_decided_states_are_left_alone() -> None:
    for state in (State.UNDERPAID, State.REFUNDED, State.CANCELLED):
        assert target(invoice(state, DUE // 2)) is None


@given(st.sampled_from(list(State)), st.integers(min_value=0, max_value=10 * DUE))
def test_settlement_never_moves_more_than_was_confirmed(state: State, confirmed: int) -> None:
    goal = target(invoice(state, confirmed))
    if goal is not None:
        assert goal.available >= 0 and goal.excess >= 0
        assert goal.available <= DUE
        assert goal.available + goal.excess <= confirmed
        if state in (State.PAID, State.OVERPAID):
            assert goal.available + goal.excess == confirmed
