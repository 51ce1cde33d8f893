"""The pure parts of deposit sweeps: what is swept, how much gas is funded,
which deposit addresses qualify (core/payouts/sweeps.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.payouts import txbuilder
from core.payouts.sweeps import (
    PARKING,
    SETTLED,
    Deposit,
    eligible,
    gas_budget_wei,
    plan,
    token_gas_limit,
)

TOKEN = "eip155:1/erc20:0x" + "ab" * 20
NATIVE = "eip155:1/slip44:60"
GWEI = 10**9
FEES = txbuilder.Fees(max_fee_per_gas_wei=30 * GWEI, max_priority_fee_per_gas_wei=GWEI)
amounts = st.integers(min_value=0, max_value=10**30)
fees = st.builds(
    txbuilder.Fees,
    st.integers(min_value=1, max_value=10**13),
    st.integers(min_value=1, max_value=10**11),
)


def test_token_sweep_funds_exactly_the_worst_case_gas() -> None:
    p = plan(TOKEN, 25_000_000, 0, 0, FEES, 1)
    assert p is not None
    assert p.amount == 25_000_000
    assert p.gas_limit == txbuilder.GAS_TOKEN
    assert p.gas_funding_wei == txbuilder.GAS_TOKEN * 30 * GWEI
    assert p.fees == FEES


def test_leftover_gas_is_used_before_funding_more() -> None:
    budget = gas_budget_wei(txbuilder.GAS_TOKEN, FEES)
    assert plan(TOKEN, 5, 0, budget // 3, FEES, 1).gas_funding_wei == budget - budget // 3  # type: ignore[union-attr]
    assert plan(TOKEN, 5, 0, budget, FEES, 1).gas_funding_wei == 0  # type: ignore[union-attr]
    assert plan(TOKEN, 5, 0, budget * 2, FEES, 1).gas_funding_wei == 0  # type: ignore[union-attr]


def test_nothing_below_the_minimum_or_still_confirming() -> None:
    assert plan(TOKEN, 0, 0, 0, FEES, 1) is None
    assert plan(TOKEN, 999, 0, 0, FEES, 1_000) is None
    assert plan(TOKEN, 1_500, 600, 0, FEES, 1_000) is None
    assert plan(TOKEN, 1_500, 400, 0, FEES, 1_000).amount == 1_100  # type: ignore[union-attr]


def test_native_sweep_pays_its_own_gas() -> None:
    budget = gas_budget_wei(txbuilder.GAS_NATIVE, FEES)
    p = plan(NATIVE, 10**18, 0, 10**18, FEES, 1)
    assert p is not None
    assert p.amount == 10**18 - budget and p.gas_funding_wei == 0
    assert p.gas_limit == txbuilder.GAS_NATIVE
    assert plan(NATIVE, budget, 0, budget, FEES, 1) is None  # all of it would be gas


@given(amounts, amounts, amounts, fees, st.integers(min_value=0, max_value=10**20))
def test_token_plan_never_sweeps_more_than_confirmed_and_always_covers_gas(
    balance: int, unconfirmed: int, native: int, f: txbuilder.Fees, minimum: int
) -> None:
    p = plan(TOKEN, balance, unconfirmed, native, f, minimum)
    if p is None:
        assert balance - unconfirmed < max(minimum, 1)
        return
    assert max(minimum, 1) <= p.amount == balance - unconfirmed
    # After funding, the address holds the sweep's worst-case gas, and no more
    # was sent than needed.
    assert native + p.gas_funding_wei >= gas_budget_wei(p.gas_limit, f)
    assert p.gas_funding_wei == 0 or native + p.gas_funding_wei == gas_budget_wei(p.gas_limit, f)


@given(amounts, amounts, fees, st.integers(min_value=0, max_value=10**20))
def test_native_plan_leaves_the_worst_case_gas_and_what_is_confirming(
    balance: int, unconfirmed: int, f: txbuilder.Fees, minimum: int
) -> None:
    p = plan(NATIVE, balance, unconfirmed, balance, f, minimum)
    if p is None:
        return
    assert p.amount >= max(minimum, 1)
    assert p.amount + gas_budget_wei(p.gas_limit, f) + unconfirmed == balance


NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _deposit(**changes: object) -> Deposit:
    values: dict[str, object] = {
        "invoice_id": "i",
        "chain": "eip155:1",
        "asset": TOKEN,
        "address": "0x" + "cd" * 20,
        "derivation_index": 7,
        "state": "paid",
        "settled_time": NOW - timedelta(hours=1),
        "refund_in_progress": False,
        "sweep_in_progress": False,
        "unconfirmed": 0,
    }
    values.update(changes)
    return Deposit(**values)  # type: ignore[arg-type]


def test_selection() -> None:
    assert eligible(_deposit(), NOW, 3600)
    assert not eligible(_deposit(), NOW, 3601)  # too recent
    assert not eligible(_deposit(refund_in_progress=True), NOW, 0)
    assert not eligible(_deposit(sweep_in_progress=True), NOW, 0)
    for state in ("awaiting_payment", "detected", "expired", "cancelled"):
        assert not eligible(_deposit(state=state), NOW, 0)
    for state in SETTLED:
        assert eligible(_deposit(state=state), NOW, 0)


def test_closed_invoices_holding_funds_are_swept_too() -> None:
    # Issue 19: funds parked on a cancelled invoice, or past an expired one's
    # late window, were never swept.
    for state in PARKING:
        assert eligible(_deposit(state=state, received=5), NOW, 0)
        assert not eligible(_deposit(state=state, received=0), NOW, 0)
        assert not eligible(_deposit(state=state, received=5, refund_in_progress=True), NOW, 0)
    assert set(PARKING) == {"cancelled", "expired"}
    assert not eligible(_deposit(state="detected", received=5), NOW, 0)


@given(
    st.sampled_from(["paid", "overpaid", "refunded", "underpaid", "expired", "detected"]),
    st.booleans(),
    st.booleans(),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**6),
)
def test_selection_property(
    state: str, refunding: bool, sweeping: bool, age_s: int, min_age_s: int
) -> None:
    d = _deposit(
        state=state,
        refund_in_progress=refunding,
        sweep_in_progress=sweeping,
        settled_time=NOW - timedelta(seconds=age_s),
    )
    expected = state in SETTLED and not refunding and not sweeping and age_s >= min_age_s
    assert eligible(d, NOW, min_age_s) is expected


def test_token_gas_limit_is_the_estimate_with_a_margin_under_the_cap() -> None:
    assert token_gas_limit(35_000) == 42_000
    assert token_gas_limit(34_999) == 41_999  # rounded up, never down
    assert token_gas_limit(90_000) == txbuilder.GAS_TOKEN  # the margin stops at the cap
    assert token_gas_limit(txbuilder.GAS_TOKEN) == txbuilder.GAS_TOKEN
    assert token_gas_limit(txbuilder.GAS_TOKEN + 1) is None  # not swept unattended


@given(st.integers(min_value=21_000, max_value=txbuilder.GAS_TOKEN), fees)
def test_estimated_token_sweep_funds_exactly_its_own_limit(
    estimate: int, f: txbuilder.Fees
) -> None:
    limit = token_gas_limit(estimate)
    assert limit is not None and estimate <= limit <= txbuilder.GAS_TOKEN
    p = plan(TOKEN, 5, 0, 0, f, 1, limit)
    assert p is not None and p.gas_limit == limit
    assert p.gas_funding_wei == limit * f.max_fee_per_gas_wei


def test_a_sweep_row_builds_its_transaction_with_its_planned_limit() -> None:
    call = txbuilder.call_for(TOKEN, "0x" + "cd" * 20, 5, 42_000)
    assert call.gas_limit == 42_000
    assert txbuilder.call_for(TOKEN, "0x" + "cd" * 20, 5).gas_limit == txbuilder.GAS_TOKEN
    assert txbuilder.call_for(NATIVE, "0x" + "cd" * 20, 5).gas_limit == txbuilder.GAS_NATIVE
