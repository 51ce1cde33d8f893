"""The payout state machine: examples and properties (no I/O)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.payouts import machine as m
from core.payouts.machine import Hold, State


def run(events: list[m.Event], start: m.Payout | None = None) -> tuple[m.Payout, list[m.Decision]]:
    p = start or m.Payout()
    decisions = []
    for e in events:
        d = m.decide(p, e)
        decisions.append(d)
        if d.refusal is None:
            p = d.payout
    return p, decisions


def test_happy_path_posts_the_hold_once() -> None:
    p, ds = run([m.NonceAllocated(7), m.Signed("0xa", 7), m.Broadcasted(), m.Landed("0xa", True)])
    assert p.state is State.CONFIRMED and p.landed == "0xa" and p.nonce == 7
    assert [d.hold for d in ds] == [None, None, None, Hold.POST]
    assert [d.event_type for d in ds] == [
        None,
        "payout.signed",
        "payout.broadcast",
        "payout.confirmed",
    ]


def test_reverted_voids_and_fails() -> None:
    p, ds = run([m.NonceAllocated(1), m.Signed("0xa", 1), m.Broadcasted(), m.Landed("0xa", False)])
    assert p.state is State.FAILED and p.reason == "REVERTED" and ds[-1].hold is Hold.VOID


def test_replacement_keeps_the_nonce_and_either_candidate_may_land() -> None:
    p, _ = run(
        [
            m.NonceAllocated(3),
            m.Signed("0xa", 3),
            m.Broadcasted(),
            m.Replace(),
            m.Signed("0xb", 3),
            m.Broadcasted(),
        ]
    )
    assert p.candidates == ("0xa", "0xb") and p.nonce == 3
    assert m.decide(p, m.Signed("0xc", 3)).refusal == "NOT_SIGNING"
    assert m.decide(p, m.Landed("0xa", True)).payout.state is State.CONFIRMED
    assert m.decide(p, m.Landed("0xz", True)).refusal == "NOT_OUR_TRANSACTION"


def test_a_replacement_with_another_nonce_is_refused() -> None:
    p, _ = run([m.NonceAllocated(3), m.Signed("0xa", 3), m.Broadcasted(), m.Replace()])
    assert m.decide(p, m.Signed("0xb", 4)).refusal == "NONCE_MISMATCH"


def test_policy_refusal_waits_and_gives_the_nonce_back() -> None:
    p, ds = run([m.NonceAllocated(5), m.SignRefused("APPROVALS_REQUIRED")])
    assert p.state is State.WAITING_APPROVAL and p.reason == "APPROVALS_REQUIRED"
    assert ds[-1].release_nonce and ds[-1].event_type == "payout.waiting_approval"
    p, _ = run([m.Approved(6), m.Signed("0xa", 6)], p)
    assert p.state is State.SIGNED and p.nonce == 6


def test_refused_replacement_keeps_the_broadcast_candidate() -> None:
    p, ds = run(
        [
            m.NonceAllocated(3),
            m.Signed("0xa", 3),
            m.Broadcasted(),
            m.Replace(),
            m.SignRefused("OVER_TX_CAP"),
        ]
    )
    assert p.state is State.BROADCAST and not ds[-1].release_nonce


def test_cancel_only_before_signing() -> None:
    assert m.decide(m.Payout(), m.Cancel()).hold is Hold.VOID
    signed, _ = run([m.NonceAllocated(1), m.Signed("0xa", 1)])
    assert m.decide(signed, m.Cancel()).refusal == "PAYOUT_NOT_CANCELLABLE"


def test_final_states_take_nothing() -> None:
    p, _ = run([m.Cancel()])
    for e in (m.Cancel(), m.NonceAllocated(1), m.Landed("0xa", True), m.NonceLost()):
        assert m.decide(p, e).refusal == "PAYOUT_FINAL"


def test_bumped_is_at_least_ten_percent() -> None:
    assert m.bumped(100) == 112 and m.bumped(1) == 2 and m.bumped(10**9) >= 11 * 10**8


hashes = st.sampled_from(["0xa", "0xb", "0xc", "0xd"])
events = st.one_of(
    st.just(m.Cancel()),
    st.builds(m.NonceAllocated, st.integers(0, 5)),
    st.builds(m.Signed, hashes, st.integers(0, 5)),
    st.builds(m.SignRefused, st.sampled_from(["APPROVALS_REQUIRED", "OVER_TX_CAP"])),
    st.builds(m.Approved, st.integers(0, 5)),
    st.just(m.Broadcasted()),
    st.just(m.Replace()),
    st.builds(m.Landed, hashes, st.booleans()),
    st.just(m.NonceLost()),
)


@given(st.lists(events, max_size=40))
def test_properties(sequence: list[m.Event]) -> None:
    p = m.Payout()
    releases = 0
    signed_nonces: set[int] = set()
    succeeded: set[str] = set()
    for e in sequence:
        d = m.decide(p, e)
        if d.refusal is not None:
            assert d.payout == p and d.hold is None and not d.release_nonce
            continue
        if isinstance(e, m.Signed):
            signed_nonces.add(e.nonce)
        if isinstance(e, m.Landed) and e.succeeded:
            succeeded.add(e.tx_hash)
        releases += d.hold is not None
        p = d.payout
        # Never two different nonces among signed transactions: at most one can land.
        assert len(signed_nonces) <= 1
        if p.candidates:
            assert p.nonce in signed_nonces
        # Confirmed only with a succeeded landing of one of its own candidates.
        if p.state is State.CONFIRMED:
            assert p.landed in succeeded and p.landed in p.candidates
        # The hold is released exactly once, exactly when the payout is final.
        assert releases == (1 if p.state in m.FINAL else 0)
        assert p.hold_released == (p.state in m.FINAL)
