"""The reconciliation decider: tables of known cases and hypothesis properties."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.reconcile.decide import (
    ChainTransaction,
    ChainTransfer,
    Expected,
    Location,
    Movement,
    MovementKind,
    Place,
    Verdict,
    check_transaction,
    compare_balances,
    settled_height,
    timing,
)

TOKEN = "eip155:1/erc20:0x" + "a" * 40
NATIVE = "eip155:1/slip44:60"
DEP = "0x" + "d" * 40
DEP2 = "0x" + "e" * 40
HOT = "0x" + "1" * 40
TREASURY = "0x" + "7" * 40
H = 100


def dep(asset: str = TOKEN, address: str = DEP) -> Location:
    return Location(asset, Place.DEPOSIT, address)


def hot(asset: str = TOKEN) -> Location:
    return Location(asset, Place.HOT, HOT)


def payment(**kw: object) -> Movement:
    base: dict[str, object] = dict(
        kind=MovementKind.PAYMENT,
        resource="merchants/m/invoices/i#1",
        amount=500,
        source=None,
        destination=dep(),
        mined_height=90,
        succeeded=True,
        value_booked=False,
    )
    base.update(kw)
    return Movement(**base)  # type: ignore[arg-type]


def payout(**kw: object) -> Movement:
    base: dict[str, object] = dict(
        kind=MovementKind.PAYOUT,
        resource="merchants/m/payouts/p",
        amount=300,
        source=hot(),
        destination=None,
        mined_height=95,
        succeeded=True,
        value_booked=False,
        fee_wei=21,
        fee_from=hot(NATIVE),
        fee_booked=False,
    )
    base.update(kw)
    return Movement(**base)  # type: ignore[arg-type]


def _sum(items: list[tuple[Location, object]]) -> dict[Location, int]:
    out: dict[Location, int] = defaultdict(int)
    for loc, e in items:
        out[loc] += e.amount  # type: ignore[attr-defined]
    return dict(out)


@pytest.mark.parametrize(
    ("movement", "expected"),
    [
        # A payment in a block at or below the height, still confirming: chain ahead.
        (payment(), {dep(): 500}),
        # Confirmed and posted, mined at or below the height: nothing to explain.
        (payment(value_booked=True, final=True), {}),
        # Posted (zero-conf, or a low tier) but mined above the height: ledger ahead.
        (payment(value_booked=True, final=True, mined_height=101), {dep(): -500}),
        # Seen in the mempool only: neither side has it.
        (payment(mined_height=None), {}),
        # Another asset than the invoice's: recorded, never booked — explained forever.
        (payment(counted=False, final=True), {dep(): 500}),
        # A payout landed at or below the height, not yet final: value and gas left the hot key.
        (payout(), {hot(): -300, hot(NATIVE): -21}),
        # Booked (confirmed) but mined above the height: ledger ahead.
        (
            payout(mined_height=120, value_booked=True, fee_booked=True, final=True),
            {hot(): 300, hot(NATIVE): 21},
        ),
        # Confirmed and booked, mined below: nothing.
        (payout(value_booked=True, fee_booked=True, final=True), {}),
        # Reverted while in flight: only the gas left.
        (payout(succeeded=False), {hot(NATIVE): -21}),
        # A final record whose value the chain has and the ledger lacks is no timing item.
        (payout(final=True, fee_booked=True), {}),
        # Not mined yet: nothing.
        (payout(mined_height=None), {}),
        # A sweep in flight: deposit down (value and its gas), treasury up.
        (
            Movement(
                MovementKind.SWEEP,
                "sweeps/s",
                400,
                dep(),
                Location(TOKEN, Place.TREASURY, TREASURY),
                99,
                True,
                False,
                fee_wei=7,
                fee_from=dep(NATIVE),
            ),
            {dep(): -400, Location(TOKEN, Place.TREASURY, TREASURY): 400, dep(NATIVE): -7},
        ),
    ],
)
def test_timing_table(movement: Movement, expected: dict[Location, int]) -> None:
    got = {k: v for k, v in _sum(timing(movement, H)).items() if v}  # type: ignore[arg-type]
    assert got == expected


@pytest.mark.parametrize(
    ("mined", "booked", "expected"),
    [(95, False, {hot(NATIVE): -21}), (120, True, {hot(NATIVE): 21}), (95, True, {})],
)
def test_a_nonce_fill_moves_only_its_gas(
    mined: int, booked: bool, expected: dict[Location, int]
) -> None:
    """The hot key to itself, value 0: its fee is what the chain and the ledger differ by."""
    fill = Movement(
        MovementKind.NONCE_FILL,
        "sweeps/f",
        0,
        hot(NATIVE),
        hot(NATIVE),
        mined,
        True,
        False,
        fee_wei=21,
        fee_from=hot(NATIVE),
        fee_booked=booked,
        final=booked,
    )
    assert {k: v for k, v in _sum(timing(fill, H)).items() if v} == expected  # type: ignore[arg-type]
    assert {e.kind for _, e in timing(fill, H)} <= {
        "nonce_fill_fee_in_flight",
        "nonce_fill_fee_booked_after_height",
    }


def test_explanation_kinds_name_the_reason() -> None:
    kinds = {e.kind for _, e in timing(payment(), H)}
    assert kinds == {"payment_confirming"}
    kinds = {e.kind for _, e in timing(payment(counted=False, final=True), H)}
    assert kinds == {"uncounted_payment"}
    kinds = {e.kind for _, e in timing(payout(), H)}
    assert kinds == {"payout_in_flight", "payout_fee_in_flight"}


def test_agreeing_balances_report_nothing() -> None:
    outcome = compare_balances({dep(): 10}, {dep(): 10}, [], H, {})
    assert outcome.differences == [] and outcome.new_baselines == {}


def test_funds_the_ledger_does_not_know_are_unexplained() -> None:
    outcome = compare_balances({dep(): 10}, {dep(): 15, dep(NATIVE): 0}, [], H, {})
    (d,) = outcome.differences
    assert d.location == dep() and d.unexplained and d.unexplained_amount == 5
    assert (d.ledger_amount, d.chain_amount) == (10, 15)


def test_ledger_custody_without_chain_counterpart_is_unexplained() -> None:
    outcome = compare_balances({dep(): 10}, {dep(): 0}, [], H, {})
    (d,) = outcome.differences
    assert d.unexplained_amount == -10


def test_unattributed_ledger_custody_is_unexplained() -> None:
    loc = Location(TOKEN, Place.LEDGER, "")
    (d,) = compare_balances({loc: 3}, {}, [], H, {}).differences
    assert d.location == loc and d.unexplained_amount == -3


def test_confirming_payment_is_explained_not_flagged() -> None:
    outcome = compare_balances({dep(): 0}, {dep(): 500}, [payment()], H, {})
    (d,) = outcome.differences
    assert not d.unexplained and [e.kind for e in d.explanations] == ["payment_confirming"]


def test_an_explanation_without_its_difference_is_itself_unexplained() -> None:
    # The record says the chain should hold 500 more; it does not.
    (d,) = compare_balances({dep(): 0}, {dep(): 0}, [payment()], H, {}).differences
    assert d.unexplained_amount == -500


def test_operator_location_first_run_records_its_opening_balance() -> None:
    ledger = {hot(): -300, hot(NATIVE): -21}
    chain = {hot(): 1_000, hot(NATIVE): 5_000}
    outcome = compare_balances(ledger, chain, [], H, {})
    assert outcome.new_baselines == {hot(): 1_300, hot(NATIVE): 5_021}
    assert all(not d.unexplained for d in outcome.differences)
    # Later: the same gap is explained; a changed gap (funds moved outside Kassa) is not.
    again = compare_balances(ledger, chain, [], H, outcome.new_baselines)
    assert again.new_baselines == {} and all(not d.unexplained for d in again.differences)
    moved = compare_balances(ledger, {**chain, hot(): 900}, [], H, outcome.new_baselines)
    bad = [d for d in moved.differences if d.unexplained]
    assert [(d.location, d.unexplained_amount) for d in bad] == [(hot(), -100)]


def test_the_opening_balance_excludes_what_is_in_flight() -> None:
    outcome = compare_balances({hot(): 0}, {hot(): 700}, [payout(fee_wei=0)], H, {})
    assert outcome.new_baselines == {hot(): 1_000}


def test_a_chain_balance_must_be_read_for_every_attributed_location() -> None:
    with pytest.raises(AssertionError):
        compare_balances({dep(): 1}, {}, [], H, {})


# -- property: a consistent world has no unexplained difference ----------------

LOCATIONS = [dep(), dep(address=DEP2), dep(NATIVE), dep(NATIVE, DEP2), hot(), hot(NATIVE)]


@st.composite
def movements(draw: st.DrawFn) -> Movement:
    kind = draw(st.sampled_from(list(MovementKind)))
    amount = draw(st.integers(1, 10**30))
    mined = draw(st.one_of(st.none(), st.integers(0, 2 * H)))
    succeeded = draw(st.booleans())
    final = draw(st.booleans())
    counted = draw(st.booleans()) if kind is MovementKind.PAYMENT else True
    if final:
        # A final record's booking is complete: the value iff it landed and succeeded.
        value_booked = mined is not None and succeeded and counted
        fee_booked = mined is not None
    else:
        value_booked = draw(st.booleans())
        fee_booked = draw(st.booleans())
    if kind is MovementKind.PAYMENT:
        return Movement(
            kind,
            "r",
            amount,
            None,
            draw(st.sampled_from(LOCATIONS[:4])),
            mined,
            succeeded,
            value_booked,
            counted=counted,
            final=final,
        )
    source = draw(st.sampled_from(LOCATIONS))
    destination = draw(st.one_of(st.none(), st.sampled_from(LOCATIONS)))
    return Movement(
        kind,
        "r",
        amount,
        source,
        destination,
        mined,
        succeeded,
        value_booked,
        fee_wei=draw(st.integers(0, 10**18)),
        fee_from=draw(st.sampled_from(LOCATIONS)),
        fee_booked=fee_booked,
        final=final,
    )


def _effects(moves: list[Movement], height: int | None) -> dict[Location, int]:
    """What the chain (at `height`) or, for None, the ledger holds of each movement."""
    out: dict[Location, int] = defaultdict(int)
    for m in moves:
        if height is None:
            value, fee = m.value_booked and m.counted, m.fee_booked
        else:
            mined = m.mined_height is not None and m.mined_height <= height
            value, fee = mined and m.succeeded, mined
        if value:
            if m.destination is not None:
                out[m.destination] += m.amount
            if m.source is not None:
                out[m.source] -= m.amount
        if fee and m.fee_from is not None:
            out[m.fee_from] -= m.fee_wei
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(movements(), max_size=12), st.integers(0, 2 * H))
def test_property_consistent_world_has_nothing_unexplained(
    moves: list[Movement], height: int
) -> None:
    base = 10**40  # keeps every chain balance non-negative
    ledger_fx, chain_fx = _effects(moves, None), _effects(moves, height)
    ledger = {loc: base + ledger_fx.get(loc, 0) for loc in LOCATIONS}
    chain = {loc: base + chain_fx.get(loc, 0) for loc in LOCATIONS}
    baselines = {loc: 0 for loc in LOCATIONS if loc.place is Place.HOT}
    outcome = compare_balances(ledger, chain, moves, height, baselines)
    assert [d for d in outcome.differences if d.unexplained] == []
    # Every reported difference is fully accounted for by its explanations.
    for d in outcome.differences:
        assert d.chain_amount - d.ledger_amount == sum(e.amount for e in d.explanations)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(movements(), max_size=8),
    st.sampled_from(LOCATIONS[:4]),
    st.integers(-(10**20), 10**20).filter(bool),
)
def test_property_any_extra_amount_on_a_deposit_is_found_exactly(
    moves: list[Movement], where: Location, extra: int
) -> None:
    base = 10**40
    ledger_fx, chain_fx = _effects(moves, None), _effects(moves, H)
    ledger = {loc: base + ledger_fx.get(loc, 0) for loc in LOCATIONS}
    chain = {loc: base + chain_fx.get(loc, 0) for loc in LOCATIONS}
    chain[where] += extra
    baselines = {loc: 0 for loc in LOCATIONS if loc.place is Place.HOT}
    bad = [
        d for d in compare_balances(ledger, chain, moves, H, baselines).differences if d.unexplained
    ]
    assert [(d.location, d.unexplained_amount) for d in bad] == [(where, extra)]


# -- transactions ----------------------------------------------------------------

TX = "0x" + "ab" * 32


def tx(**kw: object) -> ChainTransaction:
    base: dict[str, object] = dict(
        tx_hash=TX,
        status="succeeded",
        height=90,
        transfers=(ChainTransfer(1, TOKEN, "0x" + "c" * 40, DEP, 500),),
    )
    base.update(kw)
    return ChainTransaction(**base)  # type: ignore[arg-type]


PAY = Expected("merchants/m/invoices/i#1", TX, TOKEN, 500, DEP, None, True, index=1, height=90)


@pytest.mark.parametrize(
    ("expected", "found", "verdict", "detail"),
    [
        (PAY, tx(), Verdict.PROVEN, ""),
        (PAY, tx(height=101), Verdict.NOT_YET, ""),
        (PAY, None, Verdict.MISMATCH, "unknown to the node"),
        (PAY, tx(status="pending", height=None), Verdict.MISMATCH, "pending"),
        (PAY, tx(status="reverted"), Verdict.MISMATCH, "reverted"),
        (PAY, tx(height=89), Verdict.MISMATCH, "recorded in block 90, mined in block 89"),
        (PAY, tx(transfers=()), Verdict.MISMATCH, "moves no"),
        (
            PAY,
            tx(transfers=(ChainTransfer(1, TOKEN, "0x" + "c" * 40, DEP2, 500),)),
            Verdict.MISMATCH,
            "recipient",
        ),
        (
            PAY,
            tx(transfers=(ChainTransfer(1, TOKEN, "0x" + "c" * 40, DEP, 499),)),
            Verdict.MISMATCH,
            "amount 499 on chain, 500 recorded",
        ),
        (
            Expected("p", TX, TOKEN, 500, DEP, HOT, True),
            tx(),
            Verdict.MISMATCH,
            "sender",
        ),
        (
            Expected("p", TX, TOKEN, 500, DEP, None, False),
            tx(status="reverted"),
            Verdict.PROVEN,
            "",
        ),
        (Expected("p", TX, TOKEN, 500, DEP, None, False), tx(), Verdict.MISMATCH, "failed"),
    ],
)
def test_transaction_table(
    expected: Expected, found: ChainTransaction | None, verdict: Verdict, detail: str
) -> None:
    got, text = check_transaction(expected, found, H)
    assert got is verdict
    assert detail in text
    assert (text == "") == (verdict is not Verdict.MISMATCH)


@given(st.integers(0, 10**9), st.lists(st.integers(0, 100), max_size=5))
def test_property_settled_height_is_behind_every_threshold(
    cursor: int, thresholds: list[int]
) -> None:
    h = settled_height(cursor, thresholds)
    assert 0 <= h <= cursor
    assert h == 0 or cursor - h >= max([1, *thresholds])
