"""What a payout's landings and their undoing book (core/payouts/ledger.py),
without a database: a reorg's undo mirrors its landing exactly, every id is
new, and across any sequence of landings and reorgs the funds end where the
last landing put them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.payouts import ledger

ASSET = "eip155:1/erc20:0x" + "aa" * 20
NATIVE = "eip155:1/slip44:60"


def _row(kind: str = "refund", sources: tuple[str, ...] = ("refunds_payable", "available")) -> Any:
    amounts = [3, 7][: len(sources)]
    platform = kind in ledger.PLATFORM_KINDS
    return {
        "id": "p1",
        "kind": kind,
        "merchant_id": None if platform else "m",
        "chain": "eip155:1",
        "asset": NATIVE if kind == ledger.NONCE_FILL else ASSET,
        "amount": 0 if kind == ledger.NONCE_FILL else 10 if platform else sum(amounts),
        "hold_sources": [] if platform else list(sources),
        "hold_amounts": [] if platform else amounts,
    }


def _net(transfers: list[Any]) -> dict[tuple[str, str], int]:
    """Per (account, asset): credits minus debits."""
    net: dict[tuple[str, str], int] = defaultdict(int)
    for t in transfers:
        net[(t.debit_account_id, t.asset)] -= t.amount
        net[(t.credit_account_id, t.asset)] += t.amount
    return {k: v for k, v in net.items() if v}


@pytest.mark.parametrize("kind", ["payout", "refund", "sweep", "gas_funding", "nonce_fill"])
@pytest.mark.parametrize("succeeded", [True, False])
@pytest.mark.parametrize("cycle", [0, 1, 2])
def test_undo_mirrors_the_landing(kind: str, succeeded: bool, cycle: int) -> None:
    row = _row(kind)
    landing = ledger.landing(row, succeeded, 21_000, cycle)
    undo = ledger.undo(row, succeeded, 21_000, cycle)
    ids = [t.id for t in landing + undo]
    assert len(ids) == len(set(ids))
    assert all(t.id.endswith(":undone") for t in undo if "retake" not in t.id)
    retaken = [t for t in undo if ":retake:" in t.id]
    if not succeeded and cycle == 0 and kind not in ledger.PLATFORM_KINDS:
        # The hold was voided: the funds are taken from the sources again.
        assert _net(landing + undo) == _net(retaken) != {}
        assert {t.debit_account_id for t in retaken} == {
            f"merchant:m:{ASSET}:refunds_payable",
            f"merchant:m:{ASSET}:available",
        }
    else:
        assert not retaken and _net(landing + undo) == {}


def test_a_successful_landing_sends_from_in_flight_and_books_the_gas() -> None:
    booked = ledger.landing(_row(), True, 21_000, 1)
    assert [t.id for t in booked] == ["payout:p1:sent:1", "payout:p1:fee:1"]
    assert _net(booked) == {
        (f"merchant:m:{ASSET}:payouts_in_flight", ASSET): -10,
        (f"platform:custody:{ASSET}:hot", ASSET): 10,
        (f"platform:network_fees:{NATIVE}", NATIVE): -21_000,
        (f"platform:custody:{NATIVE}:hot", NATIVE): 21_000,
    }


@pytest.mark.parametrize("succeeded", [True, False])
@pytest.mark.parametrize("cycle", [0, 1])
def test_a_nonce_fill_books_only_its_gas_as_a_platform_row(succeeded: bool, cycle: int) -> None:
    booked = ledger.landing(_row("nonce_fill"), succeeded, 21_000, cycle)
    assert [t.id for t in booked] == [f"payout:p1:fee{':1' if cycle else ''}"]
    assert {t.reference for t in booked} == {"sweeps/p1"}
    assert _net(booked) == {
        (f"platform:network_fees:{NATIVE}", NATIVE): -21_000,
        (f"platform:custody:{NATIVE}:hot", NATIVE): 21_000,
    }
    assert ledger.landing(_row("nonce_fill"), succeeded, 0, cycle) == []


def test_a_reverted_landing_after_a_reorg_returns_the_funds_to_their_sources() -> None:
    booked = ledger.landing(_row(), False, 0, 2)
    assert _net(booked) == {
        (f"merchant:m:{ASSET}:payouts_in_flight", ASSET): -10,
        (f"merchant:m:{ASSET}:refunds_payable", ASSET): 3,
        (f"merchant:m:{ASSET}:available", ASSET): 7,
    }


@given(st.lists(st.booleans(), min_size=1, max_size=6), st.integers(0, 10**6))
def test_landings_and_reorgs_end_where_the_last_landing_put_the_funds(
    outcomes: list[bool], fee: int
) -> None:
    """Landing k (succeeded or reverted), reorged, landing k+1, ...: the net of
    every booking after the first landing equals that of the last landing alone,
    as the hold's post (or void) left the funds."""
    row = _row()
    booked: list[Any] = []
    for k, succeeded in enumerate(outcomes):
        booked += ledger.landing(row, succeeded, fee, k)
        if k + 1 < len(outcomes):
            booked += ledger.undo(row, succeeded, fee, k)
    ids = [t.id for t in booked]
    assert len(ids) == len(set(ids))
    # What the first landing's hold resolution did: posted into in_flight, or voided.
    hold = (
        {(f"merchant:m:{ASSET}:payouts_in_flight", ASSET): 10}
        | {(f"merchant:m:{ASSET}:refunds_payable", ASSET): -3}
        | {(f"merchant:m:{ASSET}:available", ASSET): -7}
        if outcomes[0]
        else {}
    )
    total: dict[tuple[str, str], int] = defaultdict(int)
    for key, value in [*hold.items(), *_net(booked).items()]:
        total[key] += value
    last = outcomes[-1]
    expected = (
        {
            (f"merchant:m:{ASSET}:refunds_payable", ASSET): -3,
            (f"merchant:m:{ASSET}:available", ASSET): -7,
            (f"platform:custody:{ASSET}:hot", ASSET): 10,
        }
        if last
        else {}
    )
    if fee:
        expected |= {
            (f"platform:network_fees:{NATIVE}", NATIVE): -fee,
            (f"platform:custody:{NATIVE}:hot", NATIVE): fee,
        }
    assert {k: v for k, v in total.items() if v} == expected
