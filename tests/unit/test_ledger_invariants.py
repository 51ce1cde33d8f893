"""The ledger decider's own assertions: each one fires on the outcome it forbids.

decide() checks its result before returning it (core/ledger/rules.py,
`_assert_invariants`); the property tests in test_ledger_rules.py run it on
random batches. Here each check is shown to catch a broken outcome, so
none of them can pass vacuously.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from core.ledger import rules
from core.ledger.rules import (
    Account,
    AccountFlags,
    Balances,
    Reason,
    Resolution,
    Result,
    Stored,
    Transfer,
    TransferFlags,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USD, EUR = "eip155:1/erc20:0x" + "11" * 20, "eip155:1/erc20:0x" + "22" * 20
ACCOUNTS = {
    "a": Account("a", USD),
    "b": Account("b", USD),
    "c": Account("c", EUR),
    "d": Account("d", EUR),
    "floor": Account("floor", USD, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
}


def _ledger(balances: dict[str, Balances], writes: list[Transfer]) -> rules._Ledger:
    ledger = rules._Ledger(ACCOUNTS, {}, T0)
    ledger.balances.update(balances)
    ledger.writes = writes
    return ledger


def _check(
    batch: list[Transfer],
    results: list[Result],
    balances: dict[str, Balances],
    writes: list[Transfer],
) -> None:
    deltas = {i: b for i, b in balances.items()}  # every account starts at zero
    rules._assert_invariants(batch, ACCOUNTS, results, _ledger(balances, writes), deltas)


def test_a_sound_outcome_passes() -> None:
    t = Transfer("t1", "a", "b", 5, USD)
    _check([t], [Result()], {"a": Balances(debits_posted=5), "b": Balances(credits_posted=5)}, [t])


@pytest.mark.parametrize(
    "balances",
    [
        {"a": Balances(debits_posted=5), "b": Balances(credits_posted=4)},  # posted
        {"a": Balances(debits_pending=5), "b": Balances(credits_pending=6)},  # pending
        # Balanced overall but not per asset: USD debits paid by EUR credits.
        {"a": Balances(debits_posted=5), "d": Balances(credits_posted=5)},
    ],
)
def test_debits_must_equal_credits_per_asset(balances: dict[str, Balances]) -> None:
    t = Transfer("t1", "a", "b", 5, USD)
    with pytest.raises(AssertionError, match="debits != credits"):
        _check([t], [Result()], balances, [t])


def test_an_account_never_ends_past_its_flags() -> None:
    t = Transfer("t1", "floor", "b", 5, USD)
    with pytest.raises(AssertionError):
        _check(
            [t],
            [Result()],
            {"floor": Balances(debits_posted=5), "b": Balances(credits_posted=5)},
            [t],
        )


def test_a_transfer_is_never_written_twice() -> None:
    t = Transfer("t1", "a", "b", 5, USD)
    balances = {"a": Balances(debits_posted=10), "b": Balances(credits_posted=10)}
    with pytest.raises(AssertionError, match="written twice"):
        _check([t, t], [Result(), Result(existed=True)], balances, [t, t])


def test_a_refused_transfer_is_never_written() -> None:
    t = Transfer("t1", "a", "b", 5, USD)
    balances = {"a": Balances(debits_posted=5), "b": Balances(credits_posted=5)}
    with pytest.raises(AssertionError):
        _check([t], [Result(Reason.EXCEEDS_CREDITS, "debit_account_id")], balances, [t])


def test_a_linked_chain_never_commits_in_part() -> None:
    first = Transfer("t1", "a", "b", 5, USD, flags=TransferFlags.LINKED)
    second = Transfer("t2", "a", "b", 5, USD)
    balances = {"a": Balances(debits_posted=5), "b": Balances(credits_posted=5)}
    with pytest.raises(AssertionError):
        _check([first, second], [Result(), Result(Reason.EXCEEDS_CREDITS)], balances, [first])


def test_write_refuses_what_the_checks_before_it_must_have_refused() -> None:
    ledger = rules._Ledger(ACCOUNTS, {}, T0)
    with pytest.raises(AssertionError):  # across assets
        ledger.write(Transfer("x", "a", "c", 5, USD), 0, None)
    with pytest.raises(AssertionError):  # to itself
        ledger.write(Transfer("x", "a", "a", 5, USD), 0, None)
    pending = Stored(Transfer("p", "a", "b", 5, USD, flags=TransferFlags.PENDING), T0)
    posted = Stored(pending.transfer, T0, Resolution.POSTED)
    with pytest.raises(AssertionError):  # a second resolution of one pending transfer
        ledger.write(
            Transfer("v", "a", "b", 5, USD, flags=TransferFlags.VOID_PENDING, pending_id="p"),
            5,
            posted,
        )


def test_decide_runs_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real batch goes through `_assert_invariants`, which passes it."""
    seen: list[int] = []
    original = rules._assert_invariants

    def recording(
        batch: Sequence[Transfer],
        accounts: Mapping[str, Account],
        results: Sequence[Result],
        ledger: rules._Ledger,
        deltas: Mapping[str, Balances],
    ) -> None:
        seen.append(len(batch))
        original(batch, accounts, results, ledger, deltas)

    monkeypatch.setattr(rules, "_assert_invariants", recording)
    outcome = rules.decide([Transfer("t1", "a", "b", 5, USD)], ACCOUNTS, {}, T0)
    assert seen == [1] and outcome.results[0].ok
