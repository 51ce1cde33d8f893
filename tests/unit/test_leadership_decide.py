"""The pure leadership decisions: lock keys, lease arithmetic, fence verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.leadership import decide
from core.leadership.decide import Step, Term, Verdict

ROLES = ["clock", "reconcile", "payouts", "follow:eip155:1", "follow:eip155:31337"]


def test_lock_keys_are_stable_signed_64_bit_and_distinct_per_role() -> None:
    keys = [decide.lock_key(r) for r in ROLES]
    assert len(set(keys)) == len(keys)
    assert all(-(2**63) <= k < 2**63 for k in keys)
    # Stable across processes and releases: another replica must compute the same key.
    assert decide.lock_key("clock") == decide.lock_key("clock")
    assert decide.lock_key("follow:eip155:1") == 5971767489263587956


@pytest.mark.parametrize(
    ("role", "ok"),
    [
        ("clock", True),
        ("follow:eip155:1", True),
        ("Clock", False),
        ("clock\n", False),
        ("follow:eip155", False),
        ("", False),
        ("follow:eip155:1:x", False),
    ],
)
def test_roles_are_a_closed_shape(role: str, ok: bool) -> None:
    assert decide.is_role(role) is ok


@pytest.mark.parametrize(
    ("renewed_s", "now_s", "lease_s", "holds"),
    [
        (100.0, 100.0, 10.0, True),
        (100.0, 109.999, 10.0, True),
        (100.0, 110.0, 10.0, False),  # exactly one lease: lapsed
        (100.0, 500.0, 10.0, False),  # paused (SIGSTOP) far past the lease
        (100.0, 99.0, 10.0, False),  # a clock that went back is not trusted
    ],
)
def test_lease_arithmetic(renewed_s: float, now_s: float, lease_s: float, holds: bool) -> None:
    assert decide.lease_holds(renewed_s, now_s, lease_s) is holds


@pytest.mark.parametrize(
    ("term", "stored", "verdict"),
    [
        (3, 3, Verdict.WRITE),
        (3, 4, Verdict.REFUSE),  # another replica took over
        (3, 2, Verdict.REFUSE),  # cannot happen; never trusted
        (3, None, Verdict.REFUSE),  # the row is gone
    ],
)
def test_fence_verdicts(term: int, stored: int | None, verdict: Verdict) -> None:
    assert decide.fence_verdict(term, stored) is verdict


@pytest.mark.parametrize(
    ("alive", "renewed_s", "now_s", "step"),
    [
        (True, 0.0, 1.0, Step.KEEP),
        (False, 0.0, 1.0, Step.RESIGN),  # a lost connection ends leadership at once
        (True, 0.0, 10.0, Step.RESIGN),
        (False, 0.0, 10.0, Step.RESIGN),
    ],
)
def test_watch_step(alive: bool, renewed_s: float, now_s: float, step: Step) -> None:
    assert decide.watch_step(alive, renewed_s, now_s, 10.0) is step


def test_the_heartbeat_fits_several_times_in_a_lease_and_the_server_bound_is_one_lease() -> None:
    assert decide.heartbeat_interval_s(9.0) == 3.0
    assert decide.idle_session_timeout_ms(9.0) == 9000
    assert decide.idle_session_timeout_ms(0.0001) == 1


def test_the_resign_grace_is_a_small_part_of_a_lease() -> None:
    assert decide.resign_grace_s(3.0) == 0.5
    assert decide.resign_grace_s(60.0) == 1.0
    assert decide.resign_grace_s(1.5) < decide.heartbeat_interval_s(1.5)


def test_a_term_needs_a_positive_epoch_and_a_role() -> None:
    with pytest.raises(AssertionError):
        Term("clock", 0, "h:1")
    with pytest.raises(AssertionError):
        Term("nope nope", 1, "h:1")


@given(st.integers(min_value=1, max_value=2**62), st.integers(min_value=0, max_value=2**62))
def test_only_the_exact_epoch_writes(term: int, stored: int) -> None:
    assert (decide.fence_verdict(term, stored) is Verdict.WRITE) == (term == stored)


@given(
    st.floats(min_value=0, max_value=1e9),
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0.001, max_value=1e6),
)
def test_a_lease_that_lapsed_never_holds_again_later(
    renewed: float, gap: float, later: float, lease: float
) -> None:
    """Monotone: once lapsed at now, it stays lapsed at every later now (until renewed),
    and a lapsed lease always resigns."""
    now = renewed + gap
    if not decide.lease_holds(renewed, now, lease):
        assert not decide.lease_holds(renewed, now + later, lease)
        assert decide.watch_step(True, renewed, now, lease) is Step.RESIGN
    else:
        assert decide.watch_step(True, renewed, now, lease) is Step.KEEP
        assert decide.watch_step(False, renewed, now, lease) is Step.RESIGN


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=20))
def test_every_role_has_one_key_and_its_follower_role_another(name: str) -> None:
    assert decide.lock_key(name) == decide.lock_key(name)
    chain_role = decide.follower_role(f"eip155:{len(name)}")
    assert decide.lock_key(chain_role) != decide.lock_key(name)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=20))
def test_pg_locks_parts_recombine_to_the_lock_key(name: str) -> None:
    classid, objid = decide.lock_key_parts(name)
    assert 0 <= classid < 2**32 and 0 <= objid < 2**32
    unsigned = (classid << 32) | objid
    assert unsigned - (2**64 if unsigned >= 2**63 else 0) == decide.lock_key(name)
