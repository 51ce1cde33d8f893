"""The ledger's rules, without I/O: examples of each refusal, and properties
of random batches against an in-memory book that recomputes every total from
the stored transfers the way the database trigger does."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ledger.rules import (
    AMOUNT_MAX,
    CODE_MAX,
    TOTAL_MAX,
    Account,
    AccountFlags,
    Balances,
    Outcome,
    Reason,
    Resolution,
    Stored,
    Transfer,
    TransferFlags,
    chains,
    decide,
    effects,
    expiry_id,
    is_resolution,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CMNED = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
PENDING, POST, VOID, LINKED = (
    TransferFlags.PENDING,
    TransferFlags.POST_PENDING,
    TransferFlags.VOID_PENDING,
    TransferFlags.LINKED,
)


@dataclass
class Book:
    """Accounts and stored transfers, as the store would keep them."""

    accounts: dict[str, Account]
    stored: dict[str, Stored] = field(default_factory=dict)
    history: list[Transfer] = field(default_factory=list)

    def run(self, batch: list[Transfer], now: datetime = T0) -> Outcome:
        outcome = decide(batch, self.accounts, self.stored, now)
        for account_id, delta in outcome.deltas.items():
            a = self.accounts[account_id]
            self.accounts[account_id] = replace(a, balances=a.balances + delta)
        for t in outcome.writes:
            self.stored[t.id] = Stored(t, now)
            self.history.append(t)
            if is_resolution(t.flags):
                p = self.stored[t.pending_id]
                resolution = Resolution.POSTED if t.flags & POST else Resolution.VOIDED
                if t.id == expiry_id(t.pending_id):
                    resolution = Resolution.EXPIRED
                self.stored[t.pending_id] = replace(p, resolution=resolution)
        return outcome

    def recomputed(self) -> dict[str, Balances]:
        totals = {i: Balances() for i in self.accounts}
        for t in self.history:
            pending = self.stored[t.pending_id].transfer.amount if t.pending_id else 0
            debit, credit = effects(t, pending)
            totals[t.debit_account_id] += debit
            totals[t.credit_account_id] += credit
        return totals


def book(**flags: int) -> Book:
    accounts = {name: Account(name, "eip155:1/slip44:60", flags=f) for name, f in flags.items()}
    accounts["other"] = Account("other", "eip155:137/slip44:966")
    return Book(accounts)


def balances(b: Book, account_id: str) -> Balances:
    return b.accounts[account_id].balances


# --- examples -------------------------------------------------------------------


def test_a_transfer_moves_posted_totals_and_a_replay_changes_nothing() -> None:
    b = book(cash=0, sales=0)
    t = Transfer("t1", "cash", "sales", 100)
    assert b.run([t]).results[0].ok
    again = b.run([t])
    assert again.results[0].existed and again.writes == [] and again.deltas == {}
    assert balances(b, "cash") == Balances(debits_posted=100)
    assert balances(b, "sales") == Balances(credits_posted=100)


def test_same_id_with_another_body_names_the_first_differing_field() -> None:
    b = book(cash=0, sales=0)
    b.run([Transfer("t1", "cash", "sales", 100, reference="inv-1")])
    for changed, name in [
        (Transfer("t1", "cash", "sales", 101, reference="inv-1"), "amount"),
        (Transfer("t1", "sales", "cash", 100, reference="inv-1"), "debit_account_id"),
        (Transfer("t1", "cash", "sales", 100, reference="inv-2"), "reference"),
        (Transfer("t1", "cash", "sales", 100, reference="inv-1", flags=PENDING), "flags"),
    ]:
        result = b.run([changed]).results[0]
        assert (result.reason, result.field) == (Reason.ID_EXISTS_WITH_DIFFERENT_FIELD, name)


def test_flags_refuse_by_side() -> None:
    b = book(wallet=DMNEC, capped=CMNED, free=0)
    assert b.run([Transfer("a", "wallet", "free", 1)]).results[0].reason is Reason.EXCEEDS_CREDITS
    assert b.run([Transfer("b", "free", "capped", 1)]).results[0].reason is Reason.EXCEEDS_DEBITS
    assert b.run([Transfer("c", "free", "wallet", 10)]).results[0].ok
    # A pending debit counts against the limit at once.
    assert b.run([Transfer("d", "wallet", "free", 7, flags=PENDING)]).results[0].ok
    assert b.run([Transfer("e", "wallet", "free", 4)]).results[0].reason is Reason.EXCEEDS_CREDITS
    assert b.run([Transfer("f", "wallet", "free", 3)]).results[0].ok


def test_shape_refusals() -> None:
    b = book(x=0, y=0)
    cases = [
        (Transfer("a", "x", "x", 1), Reason.SAME_ACCOUNT),
        (Transfer("a", "x", "nope", 1), Reason.ACCOUNT_NOT_FOUND),
        (Transfer("a", "x", "y", 0), Reason.AMOUNT_INVALID),
        (Transfer("a", "x", "y", -5), Reason.AMOUNT_INVALID),
        (Transfer("a", "x", "other", 1), Reason.ASSET_MISMATCH),
        (Transfer("a", "x", "y", 1, asset="eip155:137/slip44:966"), Reason.ASSET_MISMATCH),
        (Transfer("a", "x", "y", 1, flags=POST | VOID, pending_id="p"), Reason.FLAGS_INVALID),
        (Transfer("a", "x", "y", 1, timeout_s=5), Reason.TIMEOUT_INVALID),
        (Transfer("a", "x", "y", 1, pending_id="p"), Reason.PENDING_ID_MUST_BE_EMPTY),
        (Transfer("a", flags=POST), Reason.PENDING_ID_REQUIRED),
        (Transfer("a", flags=POST, pending_id="nope"), Reason.PENDING_NOT_FOUND),
        (Transfer(expiry_id("p"), "x", "y", 1), Reason.ID_INVALID),
        (Transfer("a", "x", "y", 2**256), Reason.AMOUNT_INVALID),
    ]
    for transfer, reason in cases:
        assert b.run([transfer]).results[0].reason is reason, transfer
    assert b.history == []


def test_two_phase_post_less_then_nothing_more() -> None:
    b = book(buyer=0, escrow=0)
    b.run([Transfer("hold", "buyer", "escrow", 100, flags=PENDING)])
    assert balances(b, "buyer") == Balances(debits_pending=100)
    over = b.run([Transfer("p1", flags=POST, pending_id="hold", amount=101)]).results[0]
    assert over.reason is Reason.POST_EXCEEDS_PENDING
    assert b.run([Transfer("p1", flags=POST, pending_id="hold", amount=60)]).results[0].ok
    assert balances(b, "buyer") == Balances(debits_posted=60)
    assert balances(b, "escrow") == Balances(credits_posted=60)
    again = b.run([Transfer("p2", flags=POST, pending_id="hold")]).results[0]
    assert again.reason is Reason.PENDING_ALREADY_POSTED
    void = b.run([Transfer("v", flags=VOID, pending_id="hold")]).results[0]
    assert void.reason is Reason.PENDING_ALREADY_POSTED
    # The post itself replays as accepted.
    assert b.run([Transfer("p1", flags=POST, pending_id="hold", amount=60)]).results[0].existed


def test_void_then_post_is_refused_and_mismatches_name_the_field() -> None:
    b = book(a=0, c=0, d=0)
    b.run([Transfer("hold", "a", "c", 10, flags=PENDING, code=7)])
    wrong = b.run([Transfer("v", "a", "d", flags=VOID, pending_id="hold")]).results[0]
    assert (wrong.reason, wrong.field) == (Reason.PENDING_MISMATCH, "credit_account_id")
    assert b.run([Transfer("v", flags=VOID, pending_id="hold", amount=3)]).results[0].reason is (
        Reason.AMOUNT_INVALID
    )
    assert b.run([Transfer("v", flags=VOID, pending_id="hold")]).results[0].ok
    assert balances(b, "a") == Balances()
    post = b.run([Transfer("p", flags=POST, pending_id="hold")]).results[0]
    assert post.reason is Reason.PENDING_ALREADY_VOIDED
    plain = b.run([Transfer("q", "a", "c", 1)])
    assert b.run([Transfer("r", flags=POST, pending_id="q")]).results[0].reason is (
        Reason.PENDING_NOT_PENDING
    ), plain


def test_an_expired_pending_voids_itself_when_touched() -> None:
    b = book(a=0, c=0)
    b.run([Transfer("hold", "a", "c", 10, flags=PENDING, timeout_s=60)])
    later = T0 + timedelta(seconds=61)
    outcome = b.run([Transfer("p", flags=POST, pending_id="hold")], now=later)
    assert outcome.results[0].reason is Reason.PENDING_EXPIRED
    assert [t.id for t in outcome.writes] == [expiry_id("hold")]
    assert balances(b, "a") == Balances() and balances(b, "c") == Balances()
    again = b.run([Transfer("p", flags=POST, pending_id="hold")], now=later)
    assert again.results[0].reason is Reason.PENDING_EXPIRED and again.writes == []


def test_a_failed_linked_chain_changes_nothing_and_names_the_culprit() -> None:
    b = book(a=0, c=DMNEC, d=0)
    batch = [
        Transfer("1", "a", "c", 5, flags=LINKED),
        Transfer("2", "c", "d", 6, flags=LINKED),  # c holds 5
        Transfer("3", "a", "d", 1),
        Transfer("4", "a", "d", 1),
    ]
    outcome = b.run(batch)
    assert [r.reason for r in outcome.results] == [
        Reason.LINKED_EVENT_FAILED,
        Reason.EXCEEDS_CREDITS,
        Reason.LINKED_EVENT_FAILED,
        None,
    ]
    assert [t.id for t in outcome.writes] == ["4"]
    assert balances(b, "c") == Balances()


def test_an_open_chain_at_the_end_of_a_batch_fails() -> None:
    b = book(a=0, c=0)
    outcome = b.run(
        [Transfer("1", "a", "c", 5, flags=LINKED), Transfer("2", "a", "c", 5, flags=LINKED)]
    )
    assert [r.reason for r in outcome.results] == [
        Reason.LINKED_EVENT_FAILED,
        Reason.LINKED_CHAIN_OPEN,
    ]
    assert outcome.writes == []


def test_pending_and_its_post_in_one_batch() -> None:
    b = book(a=0, c=0)
    outcome = b.run(
        [
            Transfer("h", "a", "c", 9, flags=PENDING | LINKED),
            Transfer("p", flags=POST, pending_id="h", amount=4),
        ]
    )
    assert all(r.ok for r in outcome.results)
    assert balances(b, "a") == Balances(debits_posted=4)


# --- properties -------------------------------------------------------------------

IDS = [f"t{i}" for i in range(8)]
ACCOUNTS = ["a", "b", "c", "d", "other", "missing"]


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    kind = draw(st.sampled_from(["plain", "pending", "post", "void"]))
    linked = TransferFlags.LINKED if draw(st.integers(0, 3)) == 0 else TransferFlags.NONE
    tid = draw(st.sampled_from(IDS))
    if kind in ("post", "void"):
        flags = (POST if kind == "post" else VOID) | linked
        return Transfer(
            tid,
            flags=flags,
            pending_id=draw(st.sampled_from(IDS)),
            amount=draw(st.sampled_from([0, 1, 5, 20, 50])),
        )
    return Transfer(
        tid,
        draw(st.sampled_from(ACCOUNTS)),
        draw(st.sampled_from(ACCOUNTS)),
        draw(st.integers(0, 40)),
        flags=(PENDING if kind == "pending" else TransferFlags.NONE) | linked,
        timeout_s=draw(st.sampled_from([0, 0, 30])) if kind == "pending" else 0,
        code=draw(st.integers(0, 1)),
    )


account_flags = st.sampled_from([AccountFlags.NONE, DMNEC, CMNED])


def check_invariants(b: Book) -> None:
    by_asset: dict[str, Balances] = {}
    for a in b.accounts.values():
        by_asset[a.asset] = by_asset.get(a.asset, Balances()) + a.balances
        assert (
            min(
                a.balances.debits_pending,
                a.balances.debits_posted,
                a.balances.credits_pending,
                a.balances.credits_posted,
            )
            >= 0
        )
        flags = a.flags
        bal = a.balances
        if flags & DMNEC:
            assert bal.debits_pending + bal.debits_posted <= bal.credits_posted
        if flags & CMNED:
            assert bal.credits_pending + bal.credits_posted <= bal.debits_posted
    for total in by_asset.values():
        assert total.debits_pending == total.credits_pending
        assert total.debits_posted == total.credits_posted
    assert {i: a.balances for i, a in b.accounts.items()} == b.recomputed()
    resolved = Counter(t.pending_id for t in b.history if t.pending_id)
    assert all(n == 1 for n in resolved.values())
    for t in b.history:
        if t.flags & POST:
            assert 0 < t.amount <= b.stored[t.pending_id].transfer.amount
        assert t.amount > 0


@settings(max_examples=300, deadline=None)
@given(
    flags=st.lists(account_flags, min_size=4, max_size=4),
    batches=st.lists(st.lists(transfers(), min_size=1, max_size=8), min_size=1, max_size=6),
    steps=st.lists(st.sampled_from([0, 10, 40]), min_size=6, max_size=6),
)
def test_random_batches_keep_every_invariant(
    flags: list[int], batches: list[list[Transfer]], steps: list[int]
) -> None:
    b = book(a=flags[0], b=flags[1], c=flags[2], d=flags[3])
    # Funds to move: every account starts with credits from outside.
    b.accounts["world"] = Account("world", "eip155:1/slip44:60")
    seed = [
        Transfer(f"seed-{n}", "world", n, 30) for n in "abcd" if not flags["abcd".index(n)] & CMNED
    ]
    b.run(seed)
    now = T0
    for batch, step in zip(batches, steps, strict=False):
        now += timedelta(seconds=step)
        before = {i: a.balances for i, a in b.accounts.items()}
        outcome = b.run(batch, now)
        check_invariants(b)
        # Refused chains write nothing of theirs.
        written = {t.id for t in outcome.writes}
        for chain in chains(batch):
            if any(not outcome.results[i].ok for i in chain):
                ok_elsewhere = {batch[j].id for j in range(len(batch)) if j not in chain}
                assert all(batch[i].id not in written or batch[i].id in ok_elsewhere for i in chain)
        if all(r.ok for r in outcome.results):
            # An accepted batch replays as accepted and changes nothing.
            after = {i: a.balances for i, a in b.accounts.items()}
            replay = b.run(batch, now)
            assert all(r.ok for r in replay.results)
            assert replay.writes == [] and replay.deltas == {}
            assert {i: a.balances for i, a in b.accounts.items()} == after
        elif not outcome.writes:
            assert {i: a.balances for i, a in b.accounts.items()} == before


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(transfers(), min_size=1, max_size=10))
def test_any_replay_is_accepted_for_what_was_accepted(batch: list[Transfer]) -> None:
    b = book(a=0, b=0, c=0, d=0)
    first = b.run(batch)
    second = b.run(batch)
    for i, result in enumerate(first.results):
        if result.ok:
            assert second.results[i].ok
    assert not {t.id for t in second.writes} & {
        batch[i].id for i, r in enumerate(first.results) if r.ok
    }
    check_invariants(b)


@settings(max_examples=200, deadline=None)
@given(
    flags=st.lists(account_flags, min_size=4, max_size=4),
    batches=st.lists(st.lists(transfers(), min_size=1, max_size=12), min_size=1, max_size=4),
    every=st.integers(1, 4),
)
def test_emitted_slices_are_exactly_the_writes_and_none_is_taken_back(
    flags: list[int], batches: list[list[Transfer]], every: int
) -> None:
    """What the store streams while deciding: the writes, in order, each slice
    final (a slice later rolled back with its chain would show up here as a
    write the outcome does not have), the same results as without streaming."""
    b = book(a=flags[0], b=flags[1], c=flags[2], d=flags[3])
    b.accounts["world"] = Account("world", "eip155:1/slip44:60")
    b.run([Transfer(f"seed-{n}", "world", n, 30) for n in "abcd"])
    for now, batch in enumerate(batches):
        at = T0 + timedelta(seconds=20 * now)
        slices: list[list[Transfer]] = []
        streamed = decide(batch, b.accounts, b.stored, at, slices.append, every)
        plain = decide(batch, b.accounts, b.stored, at)
        assert [t for s in slices for t in s] == streamed.writes == plain.writes
        assert streamed.results == plain.results and streamed.deltas == plain.deltas
        assert all(slices), slices  # no empty slice is sent
        b.run(batch, at)


def test_the_last_slice_comes_only_after_the_invariants_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import core.ledger.rules as rules

    def broken(*args: object) -> None:
        raise AssertionError("debits != credits")

    monkeypatch.setattr(rules, "_assert_invariants", broken)
    b = book(a=0, b=0)
    batch = [Transfer(f"t{i}", "a", "b", 1) for i in range(5)]
    slices: list[list[Transfer]] = []
    with pytest.raises(AssertionError):
        decide(batch, b.accounts, b.stored, T0, slices.append, 2)
    # Two slices of two went out while deciding; the last one never did.
    assert [len(s) for s in slices] == [2, 2]


# --- the plain fast path against the general rules ---------------------------------

ASSET = "eip155:1/slip44:60"
NEAR_TOP = TOTAL_MAX - 60
# Enough that most are new, few enough that a batch repeats some.
FAST_IDS = [f"t{i}" for i in range(24)]


# One field one step off what the plain path takes.
ONE_OFF: dict[str, list[object]] = {
    "id": ["", " ", "x\ty", "a" * 256, "a" * 257, expiry_id("t1")],
    "debit_account_id": ["", "missing", "other", "c"],
    "credit_account_id": ["", "missing", "other", "a", "world"],
    "amount": [0, -1, AMOUNT_MAX, AMOUNT_MAX + 1],
    "asset": ["eip155:137/slip44:966"],
    "code": [CODE_MAX + 1, -1],
    "pending_id": ["t1"],
    "timeout_s": [30, -1],
}


@st.composite
def any_transfers(draw: st.DrawFn) -> Transfer:
    """Mostly what the plain path takes (flags a plain int 0, every field
    valid), each of those often with one field one step off, and next to
    them linked chains, pending/post/void and IntFlag flags (which the
    general rules resolve to an int)."""
    kind = draw(st.sampled_from(["plain"] * 8 + ["intflag", "linked", "pending", "post", "void"]))
    tid = draw(st.sampled_from(FAST_IDS))
    if kind in ("post", "void"):
        return Transfer(
            tid,
            draw(st.sampled_from(["", "", "a", "b"])),
            draw(st.sampled_from(["", "", "c", "d"])),
            flags=(4 if kind == "post" else 8) | draw(st.sampled_from([0, 0, 1])),
            pending_id=draw(st.sampled_from(FAST_IDS[:8])),
            amount=draw(st.sampled_from([0, 1, 5, 20, 50])),
        )
    debit, credit = draw(
        st.lists(
            st.sampled_from(["a", "b", "c", "d", "world"]), min_size=2, max_size=2, unique=True
        )
    )
    t = Transfer(
        tid,
        debit,
        credit,
        draw(st.sampled_from([1, 5, 20, 40])),
        asset=draw(st.sampled_from([ASSET, ASSET, ""])),
        code=draw(st.sampled_from([0, 1, CODE_MAX])),
        flags={"plain": 0, "intflag": TransferFlags.NONE, "linked": 1, "pending": 2}[kind],
        timeout_s=draw(st.sampled_from([0, 30])) if kind == "pending" else 0,
        reference=draw(st.sampled_from(["", "inv-1"])),
        user_data=draw(st.sampled_from(["", "u\tv"])),
    )
    off = draw(st.sampled_from([None] * 16 + list(ONE_OFF)))
    if off is None:
        return t
    return one_off(t, off, draw(st.sampled_from(ONE_OFF[off])))


def one_off(t: Transfer, name: str, value: object) -> Transfer:
    changes: dict[str, Any] = {name: value}  # any field, any value: checked at run time
    return replace(t, **changes)


def _strictly(outcome: Outcome) -> object:
    """An Outcome with the classes of the written numbers (an IntFlag 0 equals 0)."""
    return (
        outcome.results,
        [(w, type(w.flags), type(w.amount)) for w in outcome.writes],
        outcome.deltas,
    )


@settings(max_examples=400, deadline=None)
@given(
    flags=st.lists(
        st.sampled_from([AccountFlags.NONE] * 4 + [DMNEC, CMNED]), min_size=4, max_size=4
    ),
    near_top=st.sampled_from([None] * 8 + ["a", "b", "c", "d"]),
    history=st.lists(st.lists(any_transfers(), min_size=1, max_size=8), max_size=3),
    batch=st.lists(any_transfers(), min_size=1, max_size=24),
    step_s=st.sampled_from([0, 40]),
    every=st.integers(1, 5),
)
def test_the_plain_path_decides_exactly_as_the_general_rules(
    flags: list[int],
    near_top: str | None,
    history: list[list[Transfer]],
    batch: list[Transfer],
    step_s: int,
    every: int,
) -> None:
    """Same results, writes (in order, of the same classes), balance changes
    and streamed slices (the same cuts) with and without the plain path, on
    any stored state: limits, totals near the top, stored and expired
    pendings, replays and duplicates within the batch."""
    b = book(a=flags[0], b=flags[1], c=flags[2], d=flags[3])
    if near_top is not None:  # credits near the limit, so that a credit there can overflow
        b.accounts[near_top] = replace(
            b.accounts[near_top], balances=Balances(credits_posted=NEAR_TOP)
        )
    b.accounts["world"] = Account("world", ASSET)
    b.run([Transfer(f"seed-{n}", "world", n, 30) for n in "abcd"], T0)
    for earlier in history:
        b.run(earlier, T0)
    at = T0 + timedelta(seconds=step_s)
    general_slices: list[list[Transfer]] = []
    fast_slices: list[list[Transfer]] = []
    general = decide(batch, b.accounts, b.stored, at, general_slices.append, every, fast=False)
    fast = decide(batch, b.accounts, b.stored, at, fast_slices.append, every)
    assert _strictly(fast) == _strictly(general)
    assert fast_slices == general_slices
    assert decide(batch, b.accounts, b.stored, at) == general


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in ONE_OFF.items() for value in values]
)
def test_each_field_one_step_off_decides_as_the_general_rules(name: str, value: object) -> None:
    """Every way out of the plain path, each on its own between two plain
    transfers (the property above meets them only by chance)."""
    b = book(a=0, b=0, c=DMNEC, d=0)
    b.accounts["world"] = Account("world", ASSET)
    b.run([Transfer("t1", "world", "a", 7)])
    batch = [
        Transfer("t2", "world", "b", 5, ASSET),
        one_off(Transfer("t3", "world", "b", 5, ASSET), name, value),
        Transfer("t4", "b", "d", 1),
    ]
    general = decide(batch, b.accounts, b.stored, T0, fast=False)
    assert _strictly(decide(batch, b.accounts, b.stored, T0)) == _strictly(general)
    assert general.results[0].ok and general.results[2].ok
