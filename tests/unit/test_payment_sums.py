"""The pure fold of an invoice's payment rows into the sums its state is decided
from (core/payments/store.py `sums`): examples and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from core.payments.store import Sums, sums

EXPIRE = datetime(2026, 1, 10, tzinfo=UTC)
WINDOW_END = EXPIRE + timedelta(days=1)
INVOICE = {"expire_time": EXPIRE, "monitoring_end_time": WINDOW_END}


def row(status: str, amount: int, seen: datetime = EXPIRE, counted: bool = True) -> dict[str, Any]:
    return {"status": status, "amount": amount, "first_seen_time": seen, "counted": counted}


def test_no_payments_sum_to_nothing() -> None:
    assert sums(INVOICE, []) == Sums()


def test_each_status_lands_in_its_own_sum_and_reorged_nowhere() -> None:
    got = sums(
        INVOICE,
        [
            row("pending", 1),
            row("confirming", 20),
            row("confirmed", 300),
            row("reorged", 4000),
            row("reorged", 50_000, counted=False),
        ],
    )
    assert got == Sums(pending=1, confirming=20, confirmed=300)


def test_late_and_outside_are_judged_by_first_seen_time() -> None:
    got = sums(
        INVOICE,
        [
            row("confirmed", 1, EXPIRE),  # at the deadline: on time
            row("confirmed", 20, EXPIRE + timedelta(microseconds=1)),  # late
            row("confirming", 300, WINDOW_END),  # late, inside the window
            row("pending", 4000, WINDOW_END + timedelta(seconds=1)),  # past the window
            row("reorged", 50_000, WINDOW_END + timedelta(days=1)),  # counts nowhere
        ],
    )
    assert got == Sums(pending=4000, confirming=300, confirmed=21, late=4320, outside=4000)


def test_another_asset_is_counted_as_transfers_never_as_funds() -> None:
    got = sums(
        INVOICE,
        [
            row("confirmed", 7, counted=False),
            row("pending", 9, WINDOW_END + timedelta(days=3), counted=False),
            row("reorged", 11, counted=False),
            row("confirmed", 5),
        ],
    )
    assert got == Sums(confirmed=5, wrong_asset=2)


rows_strategy = st.lists(
    st.builds(
        row,
        st.sampled_from(["pending", "confirming", "confirmed", "reorged"]),
        st.integers(min_value=1, max_value=2**256 - 1),
        st.integers(min_value=-3, max_value=3).map(lambda d: EXPIRE + timedelta(hours=12 * d)),
        st.booleans(),
    ),
    max_size=12,
)


@given(rows_strategy)
def test_sums_match_their_definitions(rows: list[dict[str, Any]]) -> None:
    got = sums(INVOICE, rows)
    live = [r for r in rows if r["status"] != "reorged"]
    counted = [r for r in live if r["counted"]]
    assert got.pending + got.confirming + got.confirmed == sum(r["amount"] for r in counted)
    assert got.confirmed == sum(r["amount"] for r in counted if r["status"] == "confirmed")
    assert got.wrong_asset == len(live) - len(counted)
    assert got.late == sum(r["amount"] for r in counted if r["first_seen_time"] > EXPIRE)
    assert got.outside == sum(r["amount"] for r in counted if r["first_seen_time"] > WINDOW_END)
    # The window ends after the deadline: what is outside it is late too.
    assert 0 <= got.outside <= got.late <= got.pending + got.confirming + got.confirmed


@given(rows_strategy, st.randoms())
def test_sums_do_not_depend_on_row_order(rows: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert sums(INVOICE, shuffled) == sums(INVOICE, rows)


@given(rows_strategy, rows_strategy)
def test_reorged_rows_change_nothing(
    rows: list[dict[str, Any]], more: list[dict[str, Any]]
) -> None:
    reorged = [{**r, "status": "reorged"} for r in more]
    assert sums(INVOICE, rows + reorged) == sums(INVOICE, rows)
