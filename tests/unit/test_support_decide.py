"""The support queue's decider: a table of subjects → (kind, actions), and
properties over any invoice, payout and endpoint state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.support import decide
from core.support.decide import Action as A
from core.support.decide import Kind as K

CHAIN = "eip155:1"
TOKEN = f"{CHAIN}/erc20:0x00000000000000000000000000000000000000aa"
NATIVE = f"{CHAIN}/slip44:60"
OTHER_CHAIN_TOKEN = "eip155:137/erc20:0x00000000000000000000000000000000000000bb"
REVIEW = (A.MARK_FOR_REVIEW, A.ATTACH_TRANSACTION, A.ACKNOWLEDGE)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def invoice(
    state: str,
    flags: set[str] = frozenset(),  # type: ignore[assignment]
    received: int = 0,
    refunded: int = 0,
    refunding: int = 0,
    other: set[str] = frozenset(),  # type: ignore[assignment]
    due: int = 100,
) -> decide.InvoiceFacts:
    return decide.InvoiceFacts(
        CHAIN, TOKEN, state, frozenset(flags), due, received, refunded, refunding, frozenset(other)
    )


def found(facts: decide.Facts) -> list[tuple[K, tuple[A, ...], int | None]]:
    return [(f.kind, f.actions, f.amount) for f in decide.classify(facts)]


TABLE = [
    pytest.param(invoice("awaiting_payment"), [], id="nothing-to-do"),
    pytest.param(invoice("paid", received=100), [], id="paid-exactly"),
    pytest.param(
        invoice("underpaid", {"paid_partial"}, received=60),
        [
            (
                K.INVOICE_UNDERPAID,
                (A.ACCEPT_AS_PAID, A.REQUEST_TOP_UP, A.REFUND_WHOLE, *REVIEW),
                40,
            )
        ],
        id="underpaid",
    ),
    pytest.param(
        invoice("paid", {"marked", "paid_partial"}, received=60),
        [],
        id="underpaid-accepted-as-paid",
    ),
    pytest.param(
        invoice("underpaid", {"paid_partial"}, received=60, refunding=60),
        [(K.INVOICE_UNDERPAID, (A.ACCEPT_AS_PAID, A.REQUEST_TOP_UP, *REVIEW), 40)],
        id="underpaid-being-refunded-offers-no-second-refund",
    ),
    pytest.param(
        invoice("overpaid", {"paid_over"}, received=130),
        [(K.INVOICE_OVERPAID, (A.REFUND_EXCESS, A.REFUND_WHOLE, *REVIEW), 30)],
        id="overpaid",
    ),
    pytest.param(
        invoice("overpaid", {"paid_over"}, received=130, refunding=30),
        [],
        id="overpaid-excess-being-refunded",
    ),
    pytest.param(
        invoice("overpaid", {"paid_over"}, received=130, refunded=30),
        [],
        id="overpaid-excess-refunded",
    ),
    pytest.param(
        invoice("overpaid", {"paid_over", "duplicate"}, received=200),
        [(K.INVOICE_DUPLICATE, (A.REFUND_EXCESS, A.REFUND_WHOLE, *REVIEW), 100)],
        id="duplicate",
    ),
    pytest.param(
        invoice("refunded", {"duplicate"}, received=200, refunded=100),
        [(K.INVOICE_DUPLICATE, (A.REFUND_EXCESS, A.REFUND_WHOLE, *REVIEW), 100)],
        id="paid-again-after-a-full-refund",
    ),
    pytest.param(
        invoice("paid", {"paid_late"}, received=100),
        [(K.INVOICE_PAID_LATE, (A.REFUND_WHOLE, *REVIEW), 100)],
        id="paid-late",
    ),
    pytest.param(
        invoice("awaiting_payment", {"wrong_asset"}, other={NATIVE}),
        [(K.INVOICE_WRONG_ASSET, REVIEW, None)],
        id="wrong-asset",
    ),
    pytest.param(
        invoice("awaiting_payment", {"wrong_asset"}, other={OTHER_CHAIN_TOKEN}),
        [(K.INVOICE_WRONG_NETWORK, REVIEW, None)],
        id="wrong-network",
    ),
    pytest.param(
        invoice("paid", {"wrong_asset"}, received=100, other={NATIVE, OTHER_CHAIN_TOKEN}),
        [(K.INVOICE_WRONG_ASSET, REVIEW, None), (K.INVOICE_WRONG_NETWORK, REVIEW, None)],
        id="wrong-asset-and-network",
    ),
    pytest.param(
        invoice("underpaid", {"paid_partial", "paid_late"}, received=60),
        [
            (
                K.INVOICE_UNDERPAID,
                (A.ACCEPT_AS_PAID, A.REQUEST_TOP_UP, A.REFUND_WHOLE, *REVIEW),
                40,
            ),
            (K.INVOICE_PAID_LATE, (A.REFUND_WHOLE, *REVIEW), 60),
        ],
        id="underpaid-late",
    ),
    pytest.param(
        decide.PayoutFacts("waiting_approval", 5, 3600, 7),
        [(K.PAYOUT_WAITING_APPROVAL, REVIEW, 7)],
        id="payout-waiting-approval",
    ),
    pytest.param(decide.PayoutFacts("broadcast", 5, 3600, 7), [], id="payout-young"),
    pytest.param(
        decide.PayoutFacts("broadcast", 3600, 3600, 7),
        [(K.PAYOUT_STUCK, REVIEW, 7)],
        id="payout-stuck",
    ),
    pytest.param(decide.PayoutFacts("confirmed", 10**6, 3600, 7), [], id="payout-final"),
    pytest.param(decide.EndpointFacts(0, 0), [], id="endpoint-healthy"),
    pytest.param(
        decide.EndpointFacts(2, 1),
        [
            (
                K.WEBHOOK_ENDPOINT_FAILING,
                (A.REDELIVER_WEBHOOKS, A.MARK_FOR_REVIEW, A.ACKNOWLEDGE),
                None,
            )
        ],
        id="endpoint-failing",
    ),
    pytest.param(
        decide.MismatchFacts(-5),
        [(K.RECONCILIATION_MISMATCH, REVIEW, -5)],
        id="reconciliation-mismatch",
    ),
    pytest.param(
        decide.MismatchFacts(7, rebaselinable=True),
        [(K.RECONCILIATION_MISMATCH, (*REVIEW, A.REBASELINE), 7)],
        id="hot-key-or-treasury-gap",
    ),
]


@pytest.mark.parametrize(("facts", "expected"), TABLE)
def test_each_subject_maps_to_its_kinds_and_safe_actions(facts, expected) -> None:
    assert found(facts) == expected


def test_the_table_covers_every_kind_and_action() -> None:
    kinds = {k for p in TABLE for k, _, _ in p.values[1]}
    actions = {a for p in TABLE for _, acts, _ in p.values[1] for a in acts}
    assert kinds == set(K)
    assert actions == set(A)


def test_every_action_has_a_scope_and_the_dangerous_ones_their_own() -> None:
    assert set(decide.SCOPE) == set(A)
    notes = {decide.SCOPE[a] for a in decide.NOTES}
    assert all(decide.SCOPE[a] not in notes for a in decide.DANGEROUS)


def test_rebaselining_is_dangerous_and_offered_only_for_a_location_gap() -> None:
    # Accepting a gap as normal hides a loss from every later run: a second
    # operator when asked, and never for a deposit address's gap.
    assert A.REBASELINE in decide.DANGEROUS and A.REBASELINE not in decide.NOTES
    assert decide.offered(decide.MismatchFacts(9), K.RECONCILIATION_MISMATCH, A.REBASELINE) is None
    gap = decide.MismatchFacts(9, rebaselinable=True)
    assert decide.offered(gap, K.RECONCILIATION_MISMATCH, A.REBASELINE) is not None
    for f in decide.classify(gap):
        note = decide.Note(f.kind, A.REBASELINE, f.fingerprint, None)
        assert decide.shown(f, [note], NOW)  # it acts on the entry itself, not the view


def test_an_acknowledgement_hides_only_the_same_facts() -> None:
    before = invoice("paid", {"paid_late"}, received=100)
    [late] = decide.classify(before)
    note = decide.Note(K.INVOICE_PAID_LATE, A.ACKNOWLEDGE, late.fingerprint, None)
    assert not decide.shown(late, [note], NOW)
    [again] = decide.classify(invoice("paid", {"paid_late"}, received=150))
    assert decide.shown(again, [note], NOW)  # more funds since: a person looks again
    other_kind = decide.Note(K.INVOICE_OVERPAID, A.ACKNOWLEDGE, late.fingerprint, None)
    assert decide.shown(late, [other_kind], NOW)


def test_a_top_up_request_hides_the_item_until_the_window_ends() -> None:
    [under] = decide.classify(invoice("underpaid", {"paid_partial"}, received=60))
    until = NOW + timedelta(hours=1)
    note = decide.Note(K.INVOICE_UNDERPAID, A.REQUEST_TOP_UP, under.fingerprint, until)
    assert not decide.shown(under, [note], NOW)
    assert decide.shown(under, [note], until)
    review = decide.Note(K.INVOICE_UNDERPAID, A.MARK_FOR_REVIEW, under.fingerprint, None)
    assert decide.shown(under, [review], NOW)  # under review is still in the queue


amounts = st.integers(min_value=0, max_value=10**30)
invoice_states = st.sampled_from(
    [
        "awaiting_payment",
        "detected",
        "confirming",
        "paid",
        "underpaid",
        "overpaid",
        "expired",
        "cancelled",
        "refunded",
    ]
)
flag_sets = st.frozensets(
    st.sampled_from(
        ["paid_late", "paid_partial", "paid_over", "duplicate", "wrong_asset", "marked"]
    )
)
assets = st.frozensets(st.sampled_from([NATIVE, TOKEN, OTHER_CHAIN_TOKEN]))


@st.composite
def invoices(draw: st.DrawFn) -> decide.InvoiceFacts:
    received = draw(amounts)
    refunded = draw(st.integers(0, received))
    refunding = draw(st.integers(0, received - refunded))
    return decide.InvoiceFacts(
        CHAIN,
        TOKEN,
        draw(invoice_states),
        draw(flag_sets),
        draw(st.integers(1, 10**30)),
        received,
        refunded,
        refunding,
        draw(assets),
    )


@given(invoices())
def test_money_moves_only_where_there_is_money_and_only_as_much(f: decide.InvoiceFacts) -> None:
    for finding in decide.classify(f):
        assert finding.actions
        if A.REFUND_EXCESS in finding.actions:
            assert 0 < f.excess <= f.held <= f.received
        if A.REFUND_WHOLE in finding.actions:
            assert 0 < f.held <= f.received - f.refunded
        if A.ACCEPT_AS_PAID in finding.actions:
            assert f.state == "underpaid" and "marked" not in f.flags
        assert A.REDELIVER_WEBHOOKS not in finding.actions
        assert decide.offered(f, finding.kind, finding.actions[0]) == finding


@given(invoices())
def test_the_same_facts_give_the_same_findings_and_any_change_a_new_fingerprint(
    f: decide.InvoiceFacts,
) -> None:
    assert decide.classify(f) == decide.classify(f)
    more = decide.InvoiceFacts(
        f.chain,
        f.asset,
        f.state,
        f.flags,
        f.amount_due,
        f.received + 1,
        f.refunded,
        f.refunding,
        f.other_assets,
    )
    before = {x.kind: x.fingerprint for x in decide.classify(f)}
    after = {x.kind: x.fingerprint for x in decide.classify(more)}
    assert all(before[k] != after[k] for k in before.keys() & after.keys())


@given(invoices())
def test_settled_invoices_with_nothing_to_return_need_nobody(f: decide.InvoiceFacts) -> None:
    quiet = (
        not (f.flags & {"paid_late", "wrong_asset"})
        and not f.other_assets
        and f.state != "underpaid"
    )
    if quiet and f.excess == 0:
        assert decide.classify(f) == []


@given(
    st.sampled_from(
        [
            "created",
            "signing",
            "waiting_approval",
            "signed",
            "broadcast",
            "confirmed",
            "failed",
            "cancelled",
        ]
    ),
    st.floats(0, 10**7),
    st.floats(1, 10**6),
)
def test_a_payout_is_in_the_queue_iff_waiting_or_overdue_and_not_final(
    state: str, age_s: float, stuck_after_s: float
) -> None:
    kinds = [f.kind for f in decide.classify(decide.PayoutFacts(state, age_s, stuck_after_s, 1))]
    final = state in {"confirmed", "failed", "cancelled"}
    if final:
        assert kinds == []
    elif state == "waiting_approval":
        assert kinds == [K.PAYOUT_WAITING_APPROVAL]
    else:
        assert kinds == ([K.PAYOUT_STUCK] if age_s >= stuck_after_s else [])


@given(st.integers(0, 50), st.integers(0, 50))
def test_an_endpoint_fails_iff_a_delivery_gave_up_or_keeps_failing(
    gave_up: int, retrying: int
) -> None:
    kinds = [f.kind for f in decide.classify(decide.EndpointFacts(gave_up, retrying))]
    assert kinds == ([K.WEBHOOK_ENDPOINT_FAILING] if gave_up or retrying else [])
