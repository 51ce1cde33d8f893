"""The invoice state machine: examples and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.domain.invoice_state import (
    ClockTick,
    Funds,
    FundsObserved,
    Invoice,
    State,
    decide,
)

EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)
DUE = 25_000_000


def fresh(due: int = DUE) -> Invoice:
    return Invoice(State.AWAITING_PAYMENT, due, EXPIRY)


def test_first_sighting_in_a_block_passes_through_detected_and_confirming() -> None:
    decision = decide(fresh(), FundsObserved(Funds(confirming=DUE)))
    assert [s.event_type for s in decision.steps] == ["invoice.detected", "invoice.confirming"]
    assert decision.invoice.state is State.CONFIRMING


def test_confirmed_funds_covering_the_amount_make_it_paid() -> None:
    confirming = decide(fresh(), FundsObserved(Funds(confirming=DUE))).invoice
    paid = decide(confirming, FundsObserved(Funds(confirmed=DUE)))
    assert [s.event_type for s in paid.steps] == ["invoice.paid"]
    assert paid.invoice.state is State.PAID


def test_confirmed_funds_below_the_amount_do_not_make_it_paid() -> None:
    decision = decide(fresh(), FundsObserved(Funds(confirmed=DUE - 1)))
    assert decision.invoice.state is State.CONFIRMING
    assert "invoice.paid" not in [s.event_type for s in decision.steps]


def test_mempool_sighting_is_detected_only() -> None:
    decision = decide(fresh(), FundsObserved(Funds(pending=DUE)))
    assert decision.invoice.state is State.DETECTED


def test_reorg_moves_back_with_payment_reorged() -> None:
    paid = decide(fresh(), FundsObserved(Funds(confirmed=DUE))).invoice
    back = decide(paid, FundsObserved(Funds()))
    assert back.invoice.state is State.AWAITING_PAYMENT
    assert [s.event_type for s in back.steps] == ["payment.reorged"]


def test_expiry_only_without_funds_and_only_after_the_deadline() -> None:
    before = decide(fresh(), ClockTick(EXPIRY - timedelta(seconds=1)))
    assert not before.changed
    at = decide(fresh(), ClockTick(EXPIRY))
    assert at.invoice.state is State.EXPIRED
    assert [s.event_type for s in at.steps] == ["invoice.expired"]
    detected = decide(fresh(), FundsObserved(Funds(pending=1))).invoice
    assert not decide(detected, ClockTick(EXPIRY + timedelta(days=1))).changed


def test_expired_invoice_state_is_not_moved_by_funds() -> None:
    expired = decide(fresh(), ClockTick(EXPIRY)).invoice
    decision = decide(expired, FundsObserved(Funds(confirmed=DUE)))
    assert decision.invoice.state is State.EXPIRED
    assert not decision.changed


amounts = st.integers(min_value=0, max_value=3 * DUE)
funds = st.builds(Funds, pending=amounts, confirming=amounts, confirmed=amounts)
events = st.one_of(
    funds.map(FundsObserved),
    st.integers(min_value=-3600, max_value=3600).map(
        lambda s: ClockTick(EXPIRY + timedelta(seconds=s))
    ),
)


def run(invoice: Invoice, sequence: list[FundsObserved | ClockTick]) -> list[Invoice]:
    seen = [invoice]
    for event in sequence:
        seen.append(decide(seen[-1], event).invoice)
    return seen


@given(st.lists(events, max_size=30))
def test_never_paid_without_confirmed_funds_covering_the_amount(sequence: list) -> None:
    for invoice in run(fresh(), sequence):
        if invoice.state is State.PAID:
            assert invoice.funds.confirmed >= invoice.amount_due


@given(st.lists(events, max_size=30), events)
def test_applying_the_same_event_twice_changes_nothing(sequence: list, event) -> None:
    once = decide(run(fresh(), sequence)[-1], event)
    twice = decide(once.invoice, event)
    assert not twice.changed
    assert twice.invoice == once.invoice


@given(st.lists(funds, min_size=1, max_size=10), st.integers(min_value=0, max_value=9))
def test_reorg_then_reinclusion_ends_where_no_reorg_would(
    observations: list[Funds], at: int
) -> None:
    at = at % len(observations)
    straight = run(fresh(), [FundsObserved(f) for f in observations])[-1]
    # The reorg removes what was counted at step `at`, then the same funds return.
    with_reorg = [FundsObserved(f) for f in observations[: at + 1]]
    with_reorg += [FundsObserved(Funds(pending=observations[at].pending))]
    with_reorg += [FundsObserved(f) for f in observations[at:]]
    reorged = run(fresh(), with_reorg)[-1]
    assert reorged.state == straight.state
    assert reorged.funds == straight.funds


@given(funds)
def test_forward_moves_pass_through_every_state_in_order(observed: Funds) -> None:
    decision = decide(fresh(), FundsObserved(observed))
    path = ["invoice.detected", "invoice.confirming", "invoice.paid"]
    types = [s.event_type for s in decision.steps]
    assert types == path[: len(types)]
