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


# -- reorgs and finality ---------------------------------------------------------


def _landed(succeeded: bool = True) -> m.Payout:
    p, _ = run(
        [m.NonceAllocated(4), m.Signed("0xa", 4), m.Broadcasted(), m.Landed("0xa", succeeded)]
    )
    return p


def test_a_reorged_confirmation_goes_back_to_broadcast_with_the_same_nonce() -> None:
    confirmed = _landed()
    d = m.decide(confirmed, m.Reorged())
    assert d.payout.state is State.BROADCAST and d.payout.nonce == 4
    assert d.payout.candidates == ("0xa",) and d.payout.landed is None
    assert d.undo is Hold.POST and d.hold is None and d.event_type == "payout.reorged"
    again = m.decide(d.payout, m.Landed("0xa", True))
    # Booked again (the hold itself was released once, at the first landing).
    assert again.payout.state is State.CONFIRMED and again.hold is None
    assert again.rebook is Hold.POST and again.event_type == "payout.confirmed"
    assert again.payout.reorgs == 1


def test_a_reorged_revert_is_resent_too() -> None:
    d = m.decide(_landed(succeeded=False), m.Reorged())
    assert d.payout.state is State.BROADCAST and d.undo is Hold.VOID and d.payout.reason == ""


def test_finalized_takes_nothing_more() -> None:
    final = m.decide(_landed(), m.Finalized()).payout
    assert final.finalized
    for e in (m.Reorged(), m.Finalized(), m.Landed("0xa", True), m.Cancel()):
        assert m.decide(final, e).refusal == "PAYOUT_FINAL"


def test_only_a_landed_payout_can_be_reorged_or_finalized() -> None:
    broadcast, _ = run([m.NonceAllocated(1), m.Signed("0xa", 1), m.Broadcasted()])
    cancelled, _ = run([m.Cancel()])
    lost, _ = run([m.NonceAllocated(1), m.Signed("0xa", 1), m.Broadcasted(), m.NonceLost()])
    for p in (m.Payout(), broadcast, cancelled, lost):
        assert m.decide(p, m.Reorged()).refusal == "NOT_LANDED"
        assert m.decide(p, m.Finalized()).refusal == "NOT_LANDED"


def test_renewed_keeps_a_signing_nonce_and_moves_a_waiting_one() -> None:
    signing, _ = run([m.NonceAllocated(2)])
    assert m.decide(signing, m.Renewed(2)).payout == signing
    assert m.decide(signing, m.Renewed(3)).refusal == "NONCE_MISMATCH"
    waiting, _ = run([m.NonceAllocated(2), m.SignRefused("APPROVALS_REQUIRED")])
    assert m.decide(waiting, m.Renewed(5)).payout.nonce == 5
    broadcast, _ = run([m.NonceAllocated(1), m.Signed("0xa", 1), m.Broadcasted()])
    assert m.decide(broadcast, m.Renewed(1)).refusal == "NOT_SIGNING"


reorg_events = st.one_of(
    events,
    st.just(m.Reorged()),
    st.just(m.Finalized()),
    st.builds(m.Renewed, st.integers(0, 5)),
)


@given(st.lists(reorg_events, max_size=50))
def test_reorg_properties(sequence: list[m.Event]) -> None:
    """Across any reorgs: the money is booked as sent exactly while confirmed,
    the hold is resolved at most once, and the nonce never moves once signed."""
    p = m.Payout()
    sent = 0  # net "sent" bookings: hold posts and rebooks, less undos
    holds = 0
    first_nonce: int | None = None
    for e in sequence:
        d = m.decide(p, e)
        if d.refusal is not None:
            assert d.payout == p
            continue
        holds += d.hold is not None
        sent += (d.hold is Hold.POST) + (d.rebook is Hold.POST) - (d.undo is Hold.POST)
        p = d.payout
        if p.candidates and first_nonce is None:
            first_nonce = p.nonce
        if p.candidates:
            assert p.nonce == first_nonce
        assert holds <= 1
        assert sent == (1 if p.state is State.CONFIRMED else 0)
        # Nothing stays landed without a transaction of its own.
        if p.state in m.LANDED:
            assert p.landed in p.candidates or p.reason == "NONCE_CONSUMED"
