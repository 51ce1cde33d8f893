"""core/payouts/gaps.py: which nonce gaps no payout will fill, and when to fill them.
Examples of the cases issue 19 names, and hypothesis properties: a nonce a live payout
holds is never filled, a gap older than the wait always is, and one nonce never gets two
fills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.payouts.gaps import Holder, Plan, plan
from core.payouts.machine import FINAL, State

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WAIT_S = 30.0


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_failed_payouts_nonce_below_a_broadcast_one_is_filled_after_the_wait() -> None:
    """The issue's case: payout 5 failed for good (its nonce was consumed by a transaction
    a reorg removed), payout 6 is broadcast and can never be mined before 5."""
    holders = [Holder(5, State.FAILED, finalized=True), Holder(6, State.BROADCAST)]
    first = plan(5, 5, holders, {}, NOW, WAIT_S)
    assert first == Plan({5: NOW}, (), (5,))  # seen, not yet filled: it may close by itself
    early = plan(5, 5, holders, first.gaps, NOW + timedelta(seconds=WAIT_S - 1), WAIT_S)
    assert early.fill == () and early.new == ()
    due = plan(5, 5, holders, first.gaps, NOW + timedelta(seconds=WAIT_S), WAIT_S)
    assert due.fill == (5,) and due.gaps == {5: NOW}


def test_live_holders_fill_their_own_nonces() -> None:
    # Being signed, signed, broadcast, or landed and not final (a reorg re-sends it).
    for state in (State.SIGNING, State.SIGNED, State.BROADCAST, State.CONFIRMED, State.FAILED):
        holders = [Holder(5, state), Holder(6, State.BROADCAST)]
        assert plan(5, 5, holders, {5: ago(3600)}, NOW, WAIT_S) == Plan()


def test_a_cancelled_or_waiting_payouts_nonce_is_a_gap() -> None:
    # A payout waiting for approvals handed its nonce back; a cancelled one holds nothing.
    for state in (State.WAITING_APPROVAL, State.CANCELLED, State.CREATED):
        holders = [Holder(5, state), Holder(6, State.SIGNED)]
        assert plan(5, 5, holders, {5: ago(60)}, NOW, WAIT_S).fill == (5,)


def test_nothing_waits_behind_a_gap_at_the_top() -> None:
    """Free nonces above every live payout: the next allocation takes them; no fill."""
    holders = [Holder(4, State.BROADCAST), Holder(5, State.FAILED, finalized=True)]
    assert plan(4, 4, holders, {5: ago(3600)}, NOW, WAIT_S) == Plan()


def test_a_nonce_in_the_mempool_is_no_gap() -> None:
    """Below the pending nonce the node holds a transaction for it, whoever sent it."""
    holders = [Holder(7, State.BROADCAST)]
    assert plan(5, 7, holders, {5: ago(60), 6: ago(60)}, NOW, WAIT_S) == Plan()
    assert plan(5, 6, holders, {6: ago(60)}, NOW, WAIT_S).fill == (6,)


def test_a_fill_that_did_not_stand_is_retried_only_after_another_wait() -> None:
    gone = Holder(5, State.CANCELLED, fill=True, create_time=ago(10))
    holders = [gone, Holder(6, State.BROADCAST)]
    assert plan(5, 5, holders, {5: ago(3600)}, NOW, WAIT_S).fill == ()
    later = NOW + timedelta(seconds=WAIT_S)
    assert plan(5, 5, holders, {5: ago(3600)}, later, WAIT_S).fill == (5,)


def test_a_standing_fill_holds_its_nonce() -> None:
    holders = [Holder(5, State.BROADCAST, fill=True, create_time=ago(60))]
    holders.append(Holder(6, State.BROADCAST))
    assert plan(5, 5, holders, {5: ago(3600)}, NOW, WAIT_S) == Plan()


def test_several_gaps_are_filled_lowest_first() -> None:
    holders = [Holder(9, State.BROADCAST), Holder(6, State.SIGNED)]
    out = plan(5, 5, holders, dict.fromkeys((5, 7, 8), ago(60)), NOW, WAIT_S)
    assert out.fill == (5, 7, 8) and set(out.gaps) == {5, 7, 8}


def test_a_closed_gap_is_forgotten() -> None:
    """A gap a new payout took (or the chain mined) leaves the plan: its first-seen time is
    not carried, so a later gap at that nonce waits the whole wait again."""
    seen = {5: ago(3600)}
    taken = [Holder(5, State.SIGNING), Holder(6, State.BROADCAST)]
    assert plan(5, 5, taken, seen, NOW, WAIT_S) == Plan()
    mined = [Holder(6, State.BROADCAST)]
    assert plan(6, 6, mined, seen, NOW, WAIT_S) == Plan()


@pytest.mark.parametrize("wait_s", [0.0, 0.5])
def test_a_zero_wait_fills_at_first_sight(wait_s: float) -> None:
    out = plan(5, 5, [Holder(6, State.BROADCAST)], {}, NOW, wait_s)
    assert out.fill == ((5,) if wait_s == 0 else ())


# -- properties -------------------------------------------------------------------

states = st.sampled_from(list(State))
holders_st = st.lists(
    st.builds(
        Holder,
        nonce=st.integers(0, 15),
        state=states,
        finalized=st.booleans(),
        fill=st.booleans(),
        create_time=st.one_of(st.none(), st.integers(0, 120).map(ago)),
    ),
    max_size=12,
)
seen_st = st.dictionaries(st.integers(0, 15), st.integers(0, 120).map(ago), max_size=10)
chain_st = st.tuples(st.integers(0, 10), st.integers(0, 4)).map(lambda t: (t[0], t[0] + t[1]))
waits = st.sampled_from([0.0, 1.0, 30.0, 60.0])


def _live(holders: list[Holder]) -> set[int]:
    return {h.nonce for h in holders if h.live}


@given(chain_st, holders_st, seen_st, waits)
def test_never_fills_a_nonce_a_live_payout_holds(
    chain: tuple[int, int], holders: list[Holder], seen: dict[int, datetime], wait_s: float
) -> None:
    latest, pending = chain
    out = plan(latest, pending, holders, seen, NOW, wait_s)
    assert not set(out.fill) & _live(holders)
    # Nor anything the chain mined or holds in its mempool, nor above every live payout.
    assert all(max(latest, pending) <= n < max(_live(holders)) for n in out.fill)


@given(chain_st, holders_st, seen_st, waits)
def test_always_fills_a_gap_older_than_the_wait(
    chain: tuple[int, int], holders: list[Holder], seen: dict[int, datetime], wait_s: float
) -> None:
    latest, pending = chain
    out = plan(latest, pending, holders, seen, NOW, wait_s)
    live = _live(holders)
    wait = timedelta(seconds=wait_s)
    for nonce in range(max(latest, pending), max(live, default=0)):
        if nonce in live:
            continue
        assert nonce in out.gaps
        first = seen.get(nonce, NOW)
        tried = [h.create_time for h in holders if h.fill and h.nonce == nonce and h.create_time]
        if NOW - max([first, *tried]) >= wait:
            assert nonce in out.fill, (nonce, out)
        else:
            assert nonce not in out.fill


@given(chain_st, holders_st, seen_st, waits, st.integers(0, 600))
def test_never_two_fills_for_one_nonce(
    chain: tuple[int, int],
    holders: list[Holder],
    seen: dict[int, datetime],
    wait_s: float,
    later_s: int,
) -> None:
    """Within one plan, and across plans: once a fill is written (it holds its nonce while
    it can land), no later plan fills that nonce again, whatever the clock says."""
    latest, pending = chain
    out = plan(latest, pending, holders, seen, NOW, wait_s)
    assert len(out.fill) == len(set(out.fill))
    written = [Holder(n, State.SIGNING, fill=True, create_time=NOW) for n in out.fill]
    for state in (State.SIGNING, State.SIGNED, State.BROADCAST, State.CONFIRMED):
        standing = [Holder(h.nonce, state, fill=True, create_time=NOW) for h in written]
        again = plan(
            latest, pending, holders + standing, out.gaps, NOW + timedelta(seconds=later_s), wait_s
        )
        assert not set(again.fill) & set(out.fill)


@given(chain_st, holders_st, seen_st, waits, st.integers(0, 600))
def test_first_sightings_are_kept_until_the_gap_closes(
    chain: tuple[int, int],
    holders: list[Holder],
    seen: dict[int, datetime],
    wait_s: float,
    later_s: int,
) -> None:
    latest, pending = chain
    out = plan(latest, pending, holders, seen, NOW, wait_s)
    for nonce, first in out.gaps.items():
        assert first == seen.get(nonce, NOW) and (nonce in out.new) == (nonce not in seen)
    again = plan(latest, pending, holders, out.gaps, NOW + timedelta(seconds=later_s), wait_s)
    assert again.gaps == out.gaps and again.new == ()


def test_final_states_other_than_landed_never_hold() -> None:
    assert {s for s in FINAL if Holder(1, s).live} == {State.CONFIRMED, State.FAILED}
    assert not any(Holder(1, s, finalized=True).live for s in FINAL)
