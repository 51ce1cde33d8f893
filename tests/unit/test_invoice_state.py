"""The invoice state machine: examples of every exception, and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.invoices.state import (
    Cancel,
    ClockTick,
    Flag,
    Funds,
    FundsObserved,
    Invoice,
    Mark,
    RefundSettled,
    State,
    decide,
    refundable,
)

EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)
DUE = 25_000_000
TOLERANCE = 250_000  # 1%
BEFORE, AFTER = EXPIRY - timedelta(seconds=1), EXPIRY + timedelta(seconds=1)


def fresh(tolerance: int = TOLERANCE) -> Invoice:
    return Invoice(State.AWAITING_PAYMENT, DUE, EXPIRY, tolerance)


def types(decision) -> list[str]:
    return [s.event_type for s in decision.steps]


def observe(invoice: Invoice, **funds: int):
    return decide(invoice, FundsObserved(Funds(**funds)))


# --- the happy path ---------------------------------------------------------


def test_first_sighting_in_a_block_passes_through_detected_and_confirming() -> None:
    decision = observe(fresh(), confirming=DUE)
    assert types(decision) == ["invoice.detected", "invoice.confirming"]
    assert decision.invoice.state is State.CONFIRMING


def test_confirmed_funds_covering_the_amount_make_it_paid() -> None:
    confirming = observe(fresh(), confirming=DUE).invoice
    paid = observe(confirming, confirmed=DUE)
    assert types(paid) == ["invoice.paid"]
    assert paid.invoice.state is State.PAID and not paid.invoice.flags


def test_mempool_sighting_is_detected_only() -> None:
    assert observe(fresh(), pending=DUE).invoice.state is State.DETECTED


# --- amounts ------------------------------------------------------------------


def test_underpayment_within_tolerance_counts_as_paid() -> None:
    decision = observe(fresh(), confirmed=DUE - TOLERANCE)
    assert decision.invoice.state is State.PAID
    assert Flag.PAID_PARTIAL not in decision.invoice.flags


def test_underpayment_beyond_tolerance_waits_for_a_top_up() -> None:
    short = observe(fresh(), confirmed=DUE - TOLERANCE - 1).invoice
    assert short.state is State.DETECTED and Flag.PAID_PARTIAL in short.flags
    topped = observe(short, confirmed=DUE)
    assert topped.invoice.state is State.PAID and Flag.PAID_PARTIAL not in topped.invoice.flags


def test_partial_payments_add_up() -> None:
    first = observe(fresh(), confirmed=DUE // 2).invoice
    second = observe(first, confirmed=DUE // 2, confirming=DUE - DUE // 2)
    assert second.invoice.state is State.CONFIRMING
    assert observe(second.invoice, confirmed=DUE).invoice.state is State.PAID


def test_short_at_the_deadline_becomes_underpaid() -> None:
    short = observe(fresh(), confirmed=DUE // 2).invoice
    assert not decide(short, ClockTick(BEFORE)).changed
    decision = decide(short, ClockTick(EXPIRY))
    assert decision.invoice.state is State.UNDERPAID and types(decision) == ["invoice.underpaid"]


def test_unconfirmed_partial_funds_at_the_deadline_are_waited_for() -> None:
    short = observe(fresh(), confirmed=1, confirming=DUE // 2).invoice
    assert not decide(short, ClockTick(AFTER)).changed


def test_overpayment_is_overpaid_with_the_excess_flagged() -> None:
    decision = observe(fresh(), confirmed=DUE + 1)
    assert decision.invoice.state is State.OVERPAID
    assert Flag.PAID_OVER in decision.invoice.flags and Flag.DUPLICATE not in decision.invoice.flags
    assert types(decision)[-1] == "invoice.overpaid"


def test_a_second_full_payment_is_flagged_duplicate() -> None:
    paid = observe(fresh(), confirmed=DUE).invoice
    again = observe(paid, confirmed=2 * DUE)
    assert again.invoice.state is State.OVERPAID
    assert {Flag.DUPLICATE, Flag.PAID_OVER} <= again.invoice.flags


def test_wrong_asset_is_flagged_and_never_counted() -> None:
    decision = observe(fresh(), wrong_asset_transfers=1)
    assert decision.invoice.state is State.AWAITING_PAYMENT
    assert decision.invoice.flags == {Flag.WRONG_ASSET}
    assert types(decision) == ["invoice.flagged"]


# --- time -----------------------------------------------------------------------


def test_expiry_only_without_funds_and_only_after_the_deadline() -> None:
    assert not decide(fresh(), ClockTick(BEFORE)).changed
    at = decide(fresh(), ClockTick(EXPIRY))
    assert at.invoice.state is State.EXPIRED and types(at) == ["invoice.expired"]
    detected = observe(fresh(), pending=DUE).invoice
    assert not decide(detected, ClockTick(AFTER + timedelta(days=1))).changed


def test_funds_after_expiry_are_credited_and_flagged_paid_late() -> None:
    expired = decide(fresh(), ClockTick(EXPIRY)).invoice
    decision = observe(expired, confirmed=DUE, late=DUE)
    assert decision.invoice.state is State.PAID
    assert Flag.PAID_LATE in decision.invoice.flags
    assert types(decision) == ["invoice.detected", "invoice.confirming", "invoice.paid_late"]


def test_top_up_after_underpaid_is_paid_late() -> None:
    short = decide(observe(fresh(), confirmed=DUE // 2).invoice, ClockTick(EXPIRY)).invoice
    decision = observe(short, confirmed=DUE, late=DUE - DUE // 2)
    assert decision.invoice.state is State.PAID
    assert types(decision) == ["invoice.confirming", "invoice.paid_late"]


# --- reorgs ---------------------------------------------------------------------


def test_reorg_moves_back_with_payment_reorged_and_reinclusion_moves_forward() -> None:
    paid = observe(fresh(), confirmed=DUE).invoice
    back = observe(paid, confirming=0)
    assert back.invoice.state is State.AWAITING_PAYMENT and types(back) == ["payment.reorged"]
    again = observe(back.invoice, confirming=DUE)
    assert again.invoice.state is State.CONFIRMING


def test_shallow_reorg_unconfirming_a_payment_moves_paid_back_to_confirming() -> None:
    paid = observe(fresh(), confirmed=DUE).invoice
    back = observe(paid, confirming=DUE)
    assert back.invoice.state is State.CONFIRMING and types(back) == ["payment.reorged"]


# --- merchant and operator ---------------------------------------------------


def test_cancel_only_before_funds() -> None:
    assert decide(fresh(), Cancel()).invoice.state is State.CANCELLED
    detected = observe(fresh(), pending=1).invoice
    refused = decide(detected, Cancel())
    assert refused.refusal is not None and refused.refusal.reason == "INVOICE_NOT_CANCELLABLE"
    assert refused.invoice == detected


def test_cancelled_invoice_is_not_moved_by_funds() -> None:
    # Issue 19: funds on a cancelled invoice no longer pass silently (they did:
    # `not decision.changed`); the state still does not move.
    cancelled = decide(fresh(), Cancel()).invoice
    decision = observe(cancelled, confirmed=DUE)
    assert decision.invoice.state is State.CANCELLED
    assert types(decision) == ["invoice.late_funds"]
    assert Flag.PAID_LATE in decision.invoice.flags


def test_mark_settles_by_hand_and_sticks() -> None:
    detected = observe(fresh(), confirmed=DUE // 2).invoice
    marked = decide(detected, Mark(State.PAID))
    assert marked.invoice.state is State.PAID and Flag.MARKED in marked.invoice.flags
    assert types(marked) == ["invoice.marked"]
    assert not decide(marked.invoice, Mark(State.PAID)).changed
    assert observe(marked.invoice, confirmed=0).invoice.state is State.PAID
    refused = decide(fresh(), Mark(State.OVERPAID))
    assert refused.refusal is not None and refused.refusal.reason == "MARK_STATE_INVALID"


def test_full_refund_makes_it_refunded_and_more_is_refused() -> None:
    over = observe(fresh(), confirmed=DUE + 5).invoice
    partly = decide(over, RefundSettled(5))
    assert partly.invoice.state is State.OVERPAID and partly.invoice.refunded == 5
    full = decide(partly.invoice, RefundSettled(DUE))
    assert full.invoice.state is State.REFUNDED and types(full) == ["invoice.refunded"]
    assert decide(over, RefundSettled(DUE + 6)).refusal.reason == "REFUND_EXCEEDS_RECEIVED"
    assert decide(fresh(), RefundSettled(1)).refusal.reason == "INVOICE_NOT_REFUNDABLE"


# --- properties -------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=3 * DUE)


@st.composite
def funds(draw) -> Funds:
    pending, confirming, confirmed = draw(amounts), draw(amounts), draw(amounts)
    late = draw(st.integers(min_value=0, max_value=pending + confirming + confirmed))
    return Funds(pending, confirming, confirmed, late, draw(st.integers(0, 2)))


repeatable_events = st.one_of(
    funds().map(FundsObserved),
    st.integers(min_value=-3600, max_value=3600).map(
        lambda s: ClockTick(EXPIRY + timedelta(seconds=s))
    ),
    st.just(Cancel()),
    st.sampled_from([State.PAID, State.EXPIRED]).map(Mark),
)
events = st.one_of(repeatable_events, st.integers(min_value=1, max_value=DUE).map(RefundSettled))


def run(invoice: Invoice, sequence: list) -> list[Invoice]:
    seen = [invoice]
    for event in sequence:
        seen.append(decide(seen[-1], event).invoice)
    return seen


@given(st.lists(events, max_size=30), st.integers(min_value=0, max_value=DUE - 1))
def test_never_settled_without_confirmed_funds_covering_the_amount(
    sequence: list, tolerance: int
) -> None:
    for invoice in run(fresh(tolerance), sequence):
        if invoice.state in {State.PAID, State.OVERPAID} and Flag.MARKED not in invoice.flags:
            assert invoice.funds.confirmed >= DUE - tolerance


@given(st.lists(events, max_size=30), repeatable_events)
def test_applying_the_same_event_twice_changes_nothing(sequence: list, event) -> None:
    once = decide(run(fresh(), sequence)[-1], event)
    twice = decide(once.invoice, event)
    assert not twice.changed
    assert twice.invoice == once.invoice


@given(st.lists(funds(), min_size=1, max_size=10), st.integers(min_value=0, max_value=9))
def test_reorg_then_reinclusion_ends_where_no_reorg_would(
    observations: list[Funds], at: int
) -> None:
    at = at % len(observations)
    straight = run(fresh(), [FundsObserved(f) for f in observations])[-1]
    removed = Funds(
        pending=observations[at].pending, late=min(observations[at].late, observations[at].pending)
    )
    with_reorg = [FundsObserved(f) for f in observations[: at + 1]]
    with_reorg += [FundsObserved(removed)]
    with_reorg += [FundsObserved(f) for f in observations[at:]]
    reorged = run(fresh(), with_reorg)[-1]
    assert (reorged.state, reorged.funds, reorged.flags) == (
        straight.state,
        straight.funds,
        straight.flags,
    )


@given(st.lists(events, max_size=30))
def test_closed_invoices_never_move_and_forward_moves_never_skip(sequence: list) -> None:
    invoice = fresh()
    order = {"invoice.detected": 1, "invoice.confirming": 2}
    for event in sequence:
        decision = decide(invoice, event)
        if invoice.state in {State.CANCELLED, State.REFUNDED}:
            assert decision.invoice.state is invoice.state
        ranks = [order[s.event_type] for s in decision.steps if s.event_type in order]
        assert ranks == sorted(ranks)
        if decision.refusal is not None:
            assert decision.invoice == invoice
        invoice = decision.invoice


@given(funds())
def test_overpaid_exactly_when_confirmed_exceeds_due(observed: Funds) -> None:
    state = observe(fresh(), **vars(observed)).invoice.state
    if state is State.OVERPAID:
        assert observed.confirmed > DUE
    if observed.confirmed > DUE:
        assert state is State.OVERPAID


# --- every unit accounted for (issue 19) --------------------------------------


def test_a_payment_after_a_full_refund_is_a_duplicate_parked_and_refundable() -> None:
    paid = observe(fresh(), confirmed=DUE).invoice
    refunded = decide(paid, RefundSettled(DUE)).invoice
    assert refunded.state is State.REFUNDED and refundable(refunded) == 0
    again = observe(refunded, confirmed=2 * DUE)
    assert again.invoice.state is State.REFUNDED
    assert types(again) == ["invoice.late_funds"]
    assert Flag.DUPLICATE in again.invoice.flags
    assert refundable(again.invoice) == DUE
    back = decide(again.invoice, RefundSettled(DUE))
    assert back.invoice.state is State.REFUNDED and refundable(back.invoice) == 0


def test_a_crypto_payment_after_a_mark_as_paid_is_a_duplicate_announced() -> None:
    marked = decide(fresh(), Mark(State.PAID)).invoice
    pending = observe(marked, pending=DUE)
    assert types(pending) == ["invoice.late_funds"] and Flag.DUPLICATE in pending.invoice.flags
    confirmed = observe(pending.invoice, confirmed=DUE)
    assert types(confirmed) == ["invoice.late_funds"]  # now refundable: announced again
    assert confirmed.invoice.state is State.PAID and refundable(confirmed.invoice) == DUE
    gone = observe(confirmed.invoice)
    assert types(gone) == ["payment.reorged"] and gone.invoice.state is State.PAID


def test_mark_expired_with_funds_is_refused_and_without_funds_is_not() -> None:
    detected = observe(fresh(), pending=1).invoice
    refused = decide(detected, Mark(State.EXPIRED))
    assert refused.refusal is not None and refused.refusal.reason == "INVOICE_HAS_FUNDS"
    assert decide(fresh(), Mark(State.EXPIRED)).invoice.state is State.EXPIRED
    paid = observe(fresh(), confirmed=DUE).invoice
    assert decide(paid, Mark(State.EXPIRED)).refusal.reason == "INVOICE_HAS_FUNDS"


def test_funds_past_the_window_are_parked_on_an_expired_invoice() -> None:
    expired = decide(fresh(), ClockTick(AFTER)).invoice
    assert expired.state is State.EXPIRED
    parked = observe(expired, confirmed=DUE, late=DUE, outside=DUE)
    assert parked.invoice.state is State.EXPIRED
    assert types(parked) == ["invoice.late_funds"]
    assert Flag.PAID_LATE in parked.invoice.flags
    assert refundable(parked.invoice) == DUE
    # Inside the window the same funds move it on, as before.
    assert observe(expired, confirmed=DUE, late=DUE).invoice.state is State.PAID


def test_an_overpayment_after_expiry_is_overpaid_with_the_late_flag() -> None:
    expired = decide(fresh(), ClockTick(AFTER)).invoice
    over = observe(expired, confirmed=DUE + 1, late=DUE + 1)
    assert types(over)[-1] == "invoice.overpaid"
    assert {Flag.PAID_LATE, Flag.PAID_OVER} <= over.invoice.flags


def test_a_second_partial_payment_is_announced() -> None:
    first = observe(fresh(), confirmed=DUE // 4).invoice
    second = observe(first, confirmed=DUE // 2)
    assert second.invoice.state is State.DETECTED
    assert types(second) == ["invoice.payment_received"]


@pytest.mark.parametrize(
    ("funds", "inside"),
    [
        (Funds(), Funds()),
        (Funds(confirmed=5, late=5), Funds(confirmed=5, late=5)),
        (Funds(pending=3, confirmed=5, late=8, outside=3), Funds(confirmed=5, late=5)),
        (
            Funds(pending=1, confirming=2, confirmed=5, late=8, outside=4),
            Funds(confirmed=4, late=4),
        ),
        (
            Funds(confirmed=5, late=5, outside=5, wrong_asset_transfers=1),
            Funds(wrong_asset_transfers=1),
        ),
    ],
)
def test_inside_the_window_takes_the_newest_from_the_least_settled(
    funds: Funds, inside: Funds
) -> None:
    assert funds.inside() == inside


@pytest.mark.parametrize(
    ("state", "flags", "confirmed", "refunded", "expected"),
    [
        (State.AWAITING_PAYMENT, frozenset(), 0, 0, 0),
        (State.DETECTED, frozenset(), 5, 0, 0),  # may still count: not yet refundable
        (State.CONFIRMING, frozenset(), DUE, 0, 0),
        (State.CONFIRMING, frozenset({Flag.MARKED}), 5, 0, 5),  # a mark closes it
        (State.PAID, frozenset(), DUE, 0, DUE),
        (State.OVERPAID, frozenset(), DUE + 9, 9, DUE),
        (State.UNDERPAID, frozenset(), 7, 0, 7),
        (State.EXPIRED, frozenset(), 0, 0, 0),
        (State.EXPIRED, frozenset(), 7, 0, 7),  # parked past the window
        (State.CANCELLED, frozenset(), 7, 2, 5),
        (State.REFUNDED, frozenset(), DUE, DUE, 0),
        (State.REFUNDED, frozenset(), 2 * DUE, DUE, DUE),
        (State.REFUNDED, frozenset(), DUE - 1, DUE, 0),  # a reorg after the refund
    ],
)
def test_refundable_table(
    state: State, flags: frozenset[Flag], confirmed: int, refunded: int, expected: int
) -> None:
    invoice = Invoice(
        state, DUE, EXPIRY, TOLERANCE, Funds(confirmed=confirmed), flags, refunded=refunded
    )
    assert refundable(invoice) == expected


@st.composite
def funds_anywhen(draw) -> Funds:
    """Funds of which a part may have been first seen after the deadline or the window."""
    pending, confirming, confirmed = draw(amounts), draw(amounts), draw(amounts)
    late = draw(st.integers(min_value=0, max_value=pending + confirming + confirmed))
    outside = draw(st.integers(min_value=0, max_value=late))
    return Funds(pending, confirming, confirmed, late, draw(st.integers(0, 2)), outside)


any_events = st.one_of(
    funds_anywhen().map(FundsObserved),
    st.integers(min_value=-3600, max_value=3600).map(
        lambda s: ClockTick(EXPIRY + timedelta(seconds=s))
    ),
    st.just(Cancel()),
    st.sampled_from([State.PAID, State.EXPIRED]).map(Mark),
    st.integers(min_value=1, max_value=2 * DUE).map(RefundSettled),
)
OPEN = {State.AWAITING_PAYMENT, State.DETECTED, State.CONFIRMING}


@given(st.lists(any_events, max_size=40), st.integers(min_value=0, max_value=DUE - 1))
def test_no_event_sequence_leaves_received_funds_unaccounted(
    sequence: list, tolerance: int
) -> None:
    invoice = fresh(tolerance)
    for event in sequence:
        decision = decide(invoice, event)
        after = decision.invoice
        if decision.refusal is not None:
            assert after == invoice
            continue
        # New units are announced, whatever the state.
        if after.funds.seen > invoice.funds.seen:
            assert decision.steps
        # Units that leave the chain are announced too.
        if after.funds.seen < invoice.funds.seen:
            assert decision.steps
        # Every confirmed unit is counted by an open invoice still taking funds,
        # or refunded, or refundable now.
        if after.state not in OPEN or after.closed:
            assert after.refunded + refundable(after) >= after.funds.confirmed
        # Funds on a closed invoice are flagged: why they are there is visible.
        if invoice.closed and after.funds.seen > invoice.funds.seen:
            assert after.flags & {Flag.PAID_LATE, Flag.DUPLICATE}
        # Parked funds never move a state, and nothing expires with funds counted.
        if after.state is State.EXPIRED and Flag.MARKED not in after.flags:
            assert after.funds.inside().seen == 0
        invoice = after
