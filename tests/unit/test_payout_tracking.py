"""The payout worker's pure decisions (core/payouts/tracking.py), as tables
and hypothesis properties: fees, refusals, approvals, chain tracking, refund
legs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.payouts import tracking
from core.payouts.tracking import (
    ApprovalStep,
    Candidate,
    FeeCaps,
    Move,
    Seen,
    Settle,
    Timing,
)
from core.payouts.txbuilder import Fees

GWEI = 10**9
CAPS = FeeCaps(100 * GWEI, 5 * GWEI)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
TIMING = Timing(replace_after_s=20, rebroadcast_after_s=5)


# -- fees ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "tip", "at_least", "expected"),
    [
        # 2 * base + tip, as the estimate says.
        (10 * GWEI, 1 * GWEI, None, Fees(21 * GWEI, 1 * GWEI)),
        # Capped: never more than the caps.
        (80 * GWEI, 9 * GWEI, None, Fees(100 * GWEI, 5 * GWEI)),
        # A replacement: +12% over the last candidate when the estimate is lower.
        (1 * GWEI, 1 * GWEI, Fees(50 * GWEI, 2 * GWEI), Fees(56 * GWEI, 2_240_000_000)),
        # A replacement follows the estimate when it is higher than the bump.
        (40 * GWEI, 1 * GWEI, Fees(20 * GWEI, 1 * GWEI), Fees(81 * GWEI, 1_120_000_000)),
        # A replacement stays within the caps.
        (1 * GWEI, 1 * GWEI, Fees(95 * GWEI, 5 * GWEI), Fees(100 * GWEI, 5 * GWEI)),
    ],
)
def test_fees(base: int, tip: int, at_least: Fees | None, expected: Fees) -> None:
    assert tracking.fees(base, tip, CAPS, at_least) == expected


@pytest.mark.parametrize(
    ("last", "fixed", "expected"),
    [
        (Fees(50 * GWEI, 2 * GWEI), False, True),
        (Fees(90 * GWEI, 2 * GWEI), False, False),  # +12% passes the max fee cap
        (Fees(50 * GWEI, 5 * GWEI), False, False),  # the tip is at its cap
        (Fees(50 * GWEI, 2 * GWEI), True, False),  # a sweep spends what it was funded with
    ],
)
def test_can_bump(last: Fees, fixed: bool, expected: bool) -> None:
    assert tracking.can_bump(last, CAPS, fixed) is expected


wei = st.integers(min_value=0, max_value=10**12)


@given(wei, wei, st.none() | st.builds(Fees, wei, wei))
def test_fees_never_pass_the_caps_and_outbid_when_they_can(
    base: int, tip: int, last: Fees | None
) -> None:
    out = tracking.fees(base, tip, CAPS, last)
    assert out.max_fee_per_gas_wei <= CAPS.max_fee_per_gas_wei
    assert out.max_priority_fee_per_gas_wei <= CAPS.max_priority_fee_per_gas_wei
    if last is not None and tracking.can_bump(last, CAPS, fixed=False):
        # What nodes require of a replacement: +10% on both.
        assert out.max_fee_per_gas_wei * 10 >= last.max_fee_per_gas_wei * 11
        assert out.max_priority_fee_per_gas_wei * 10 >= last.max_priority_fee_per_gas_wei * 11


# -- refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "is_policy", "metadata", "expected"),
    [
        ("REQUEST_EXPIRED", False, {}, tracking.RefusalPlan(renew_body=True)),
        (
            "APPROVALS_REQUIRED",
            True,
            {"approvers": "alice, bob", "threshold": "2"},
            tracking.RefusalPlan(False, 1.0, False, ("alice", "bob"), 2),
        ),
        (
            "APPROVALS_REQUIRED",
            True,
            {"approvers": "", "threshold": "x"},
            tracking.RefusalPlan(False, 1.0, False, (), 0),
        ),
        ("OVER_TX_CAP", True, {}, tracking.RefusalPlan(False, 30.0)),
        ("APPROVAL_INVALID", True, {}, tracking.RefusalPlan(False, 30.0, forget_approvals=True)),
    ],
)
def test_on_refusal(
    reason: str, is_policy: bool, metadata: dict[str, str], expected: tracking.RefusalPlan
) -> None:
    assert tracking.on_refusal(reason, is_policy, metadata) == expected


# -- approvals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "have", "threshold", "expires_in_s", "expected"),
    [
        ("APPROVALS_REQUIRED", 1, 2, 30, ApprovalStep.WAIT),
        ("APPROVALS_REQUIRED", 2, 2, 30, ApprovalStep.SIGN),
        ("APPROVALS_REQUIRED", 0, 0, 30, ApprovalStep.WAIT),  # at least one approval
        ("APPROVALS_REQUIRED", 2, 2, 3, ApprovalStep.RENEW),  # too close to expiry to send
        ("APPROVALS_REQUIRED", 0, 2, -5, ApprovalStep.RENEW),
        ("OVER_VELOCITY", 0, 0, 30, ApprovalStep.RETRY),
        ("OVER_VELOCITY", 5, 1, -5, ApprovalStep.RETRY),
    ],
)
def test_approval_step(
    reason: str, have: int, threshold: int, expires_in_s: int, expected: ApprovalStep
) -> None:
    expire = NOW + timedelta(seconds=expires_in_s)
    assert tracking.approval_step(reason, have, threshold, expire, NOW) is expected


# -- broadcast tracking ----------------------------------------------------------


def _c(h: str, seen: Seen, confirmations: int = 0) -> Candidate:
    return Candidate(h, seen, confirmations, 21_000 if confirmations else 0)


@pytest.mark.parametrize(
    ("candidates", "latest_nonce", "sent_s_ago", "expected"),
    [
        # Mined deep enough: land it (either candidate may be the one).
        ([_c("a", Seen.UNKNOWN), _c("b", Seen.SUCCEEDED, 3)], 8, 1, Move.LAND),
        ([_c("a", Seen.REVERTED, 3)], 8, 1, Move.LAND),
        # Mined, not deep enough yet.
        ([_c("a", Seen.SUCCEEDED, 2)], 8, 100, Move.WAIT),
        # Forgotten by the node, nonce free: send the stored bytes again after a while.
        ([_c("a", Seen.UNKNOWN)], 7, 1, Move.WAIT),
        ([_c("a", Seen.UNKNOWN)], 7, 6, Move.REBROADCAST),
        # Forgotten and the nonce is used on chain by something else.
        ([_c("a", Seen.UNKNOWN)], 8, 1, Move.NONCE_USED),
        # In the mempool: replaced with a higher fee once stuck long enough.
        ([_c("a", Seen.PENDING)], 7, 10, Move.WAIT),
        ([_c("a", Seen.PENDING)], 7, 21, Move.REPLACE),
        # In the mempool behind a nonce the chain lacks: no fee bump helps.
        ([_c("a", Seen.PENDING)], 5, 100, Move.GAP),
    ],
)
def test_track_broadcast(
    candidates: list[Candidate], latest_nonce: int, sent_s_ago: int, expected: Move
) -> None:
    track = tracking.track_broadcast(
        candidates, 3, 7, latest_nonce, NOW - timedelta(seconds=sent_s_ago), NOW, TIMING
    )
    assert track.move is expected
    if expected is Move.LAND:
        assert track.landed is not None and track.landed.seen in (Seen.SUCCEEDED, Seen.REVERTED)


seen = st.sampled_from(list(Seen))


@given(
    st.lists(st.tuples(seen, st.integers(0, 10)), min_size=1, max_size=4),
    st.integers(0, 20),
    st.integers(0, 100),
)
def test_track_broadcast_properties(
    states: list[tuple[Seen, int]], latest_nonce: int, sent_s_ago: int
) -> None:
    candidates = [_c(str(i), s, n) for i, (s, n) in enumerate(states)]
    track = tracking.track_broadcast(
        candidates, 3, 7, latest_nonce, NOW - timedelta(seconds=sent_s_ago), NOW, TIMING
    )
    mined = [c for c in candidates if c.seen in (Seen.SUCCEEDED, Seen.REVERTED)]
    # Lands only a mined candidate of its own, deep enough; never replaces a mined one.
    if track.move is Move.LAND:
        assert track.landed in mined and track.landed.confirmations >= 3
    if mined:
        assert track.move in (Move.LAND, Move.WAIT)
    # Never bumps the fee while an earlier nonce is missing on chain.
    if latest_nonce < 7:
        assert track.move is not Move.REPLACE
    # A lost nonce only when nothing of ours is anywhere.
    if track.move is Move.NONCE_USED:
        assert all(c.seen is Seen.UNKNOWN for c in candidates) and latest_nonce > 7


@pytest.mark.parametrize(
    ("landed", "expected"),
    [
        (_c("a", Seen.SUCCEEDED, 3), Settle.WAIT),
        (_c("a", Seen.SUCCEEDED, 12), Settle.FINALIZE),
        (_c("a", Seen.REVERTED, 13), Settle.FINALIZE),
        (_c("a", Seen.UNKNOWN), Settle.REORGED),  # gone from the canonical chain
        (_c("a", Seen.PENDING), Settle.REORGED),  # back in the mempool
    ],
)
def test_track_landed(landed: Candidate, expected: Settle) -> None:
    assert tracking.track_landed(landed, finality_depth=12) is expected


# -- refund legs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "received", "refunded", "in_progress", "expected"),
    [
        (None, 30, 0, 0, 30),
        (None, 30, 5, 0, 25),
        (None, 30, 5, 20, 5),
        (5, 30, 0, 0, 5),
        (25, 30, 0, 5, 25),
        (26, 30, 0, 5, tracking.RefundRefused(25)),
        (None, 30, 30, 0, tracking.RefundRefused(0)),
        (0, 30, 0, 0, tracking.RefundRefused(30)),
        (None, 30, 20, 20, tracking.RefundRefused(0)),
    ],
)
def test_refund_amount(
    requested: int | None,
    received: int,
    refunded: int,
    in_progress: int,
    expected: int | tracking.RefundRefused,
) -> None:
    if isinstance(expected, tracking.RefundRefused):
        with pytest.raises(tracking.RefundRefused) as refused:
            tracking.refund_amount(requested, received, refunded, in_progress)
        assert refused.value.refundable == expected.refundable
    else:
        assert tracking.refund_amount(requested, received, refunded, in_progress) == expected


@pytest.mark.parametrize(
    ("amount", "room", "expected"),
    [
        # The excess first, then what is still unsettled, then available.
        (5, {"refunds_payable": 5, "incoming": 0}, [("refunds_payable", 5)]),
        (30, {"refunds_payable": 5, "incoming": 0}, [("refunds_payable", 5), ("available", 25)]),
        (10, {"refunds_payable": 0, "incoming": 7}, [("incoming", 7), ("available", 3)]),
        (
            10,
            {"refunds_payable": 2, "incoming": 3},
            [("refunds_payable", 2), ("incoming", 3), ("available", 5)],
        ),
        # Room already taken by other refunds (negative) counts as none.
        (4, {"refunds_payable": -3, "incoming": 0}, [("available", 4)]),
        (4, {}, [("available", 4)]),
    ],
)
def test_refund_legs(amount: int, room: dict[str, int], expected: list[tuple[str, int]]) -> None:
    assert tracking.refund_legs(amount, room) == expected


@given(
    st.integers(1, 10**30),
    st.dictionaries(st.sampled_from(["refunds_payable", "incoming"]), st.integers(-100, 10**30)),
)
def test_refund_legs_properties(amount: int, room: dict[str, int]) -> None:
    legs = tracking.refund_legs(amount, room)
    assert sum(a for _, a in legs) == amount and all(a > 0 for _, a in legs)
    assert [s for s, _ in legs] == [s for s in tracking.REFUND_SOURCES if s in dict(legs)]
    for source, taken in legs:
        if source != "available":
            assert taken <= room[source]


def test_machine_bump_is_the_fee_rule_tracking_uses() -> None:
    assert tracking.fees(0, 0, CAPS, Fees(100, 100)) == Fees(tracking.bumped(100), 112)


def test_bumped_is_at_least_ten_percent() -> None:
    assert (
        tracking.bumped(100) == 112
        and tracking.bumped(1) == 2
        and tracking.bumped(10**9) >= 11 * 10**8
    )
