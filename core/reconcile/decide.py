"""The comparison, without I/O: ledger balances, chain balances and the
movements Kassa recorded → every difference, explained or not.

A location is one place custody sits: a deposit address, the hot key, the
treasury (per asset), or `ledger` for custody booked to no address at all.
At the reconciliation height the chain and the ledger may disagree for a
known reason only: a movement whose chain effect and ledger booking are not
both in, or both out, at that height (a payment still confirming, a payout
landed and not yet final, a sweep confirmed after the height…). Each such
movement is an explanation carrying the amount it puts the chain ahead of
the ledger; what the explanations do not cover is unexplained.

Operator-managed locations (the hot key, the treasury) are funded and
drained outside Kassa; the first run that sees one records what the chain
holds beyond the ledger as its opening baseline (an explanation, kind
`opening_balance`); any later change of that gap is unexplained.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, assert_never


class Place(StrEnum):
    DEPOSIT = "deposit"
    HOT = "hot"
    TREASURY = "treasury"
    LEDGER = "ledger"  # custody no address accounts for


# Places whose on-chain balance includes funds moved outside Kassa.
OPERATOR_PLACES = frozenset({Place.HOT, Place.TREASURY})


class MovementKind(StrEnum):
    PAYMENT = "payment"
    PAYOUT = "payout"
    REFUND = "refund"
    SWEEP = "sweep"
    GAS_FUNDING = "gas_funding"
    NONCE_FILL = "nonce_fill"  # the hot key to itself, value 0: only its fee moves


class Location(NamedTuple):
    # A named tuple rather than a dataclass: a run builds and hashes one per
    # balance (100,000s), and tuple creation and hashing are several times cheaper.
    asset: str  # CAIP-19
    place: Place
    address: str  # lowercase 0x; "" for Place.LEDGER


@dataclass(frozen=True, slots=True)
class Explanation:
    kind: str
    resource: str
    amount: int  # what it puts the chain ahead of the ledger (negative: behind)


@dataclass(frozen=True, slots=True)
class Movement:
    """A movement Kassa recorded, and where its effects stand."""

    kind: MovementKind
    resource: str
    amount: int  # of `source`/`destination`'s asset, base units
    source: Location | None  # None: from outside Kassa (a customer's payment)
    destination: Location | None  # None: leaves Kassa (a payout's recipient)
    mined_height: int | None  # None: not mined (pending, dropped, reorged out)
    succeeded: bool  # the mined transaction did not revert
    value_booked: bool  # the ledger holds the move itself
    fee_wei: int = 0
    fee_from: Location | None = None  # native asset location that paid the gas
    fee_booked: bool = False
    counted: bool = True  # a payment in another asset than its invoice's is never booked
    # The record reached a final state (payouts: confirmed, failed, cancelled;
    # payments: confirmed). Its ledger booking is then complete, so a chain
    # effect the ledger lacks is no timing difference: it stays unexplained.
    final: bool = False

    def __post_init__(self) -> None:
        assert self.amount >= 0 and self.fee_wei >= 0
        assert self.source is not None or self.destination is not None
        assert self.fee_wei == 0 or self.fee_from is not None


@dataclass(frozen=True, slots=True)
class BalanceDifference:
    location: Location
    ledger_amount: int
    chain_amount: int
    explanations: tuple[Explanation, ...]
    unexplained_amount: int  # chain - ledger - sum(explanations)

    @property
    def unexplained(self) -> bool:
        return self.unexplained_amount != 0


def _value_kind(m: Movement, on_chain: bool) -> str:
    match m.kind:
        case MovementKind.PAYMENT:
            if not m.counted:
                return "uncounted_payment"
            return "payment_confirming" if on_chain else "payment_booked_after_height"
        case (
            MovementKind.PAYOUT
            | MovementKind.REFUND
            | MovementKind.SWEEP
            | MovementKind.GAS_FUNDING
            | MovementKind.NONCE_FILL
        ):
            return f"{m.kind}_in_flight" if on_chain else f"{m.kind}_booked_after_height"
        case _:
            assert_never(m.kind)


def timing(m: Movement, height: int) -> list[tuple[Location, Explanation]]:
    """What `m` puts the chain ahead of the ledger at `height`, per location."""
    mined = m.mined_height is not None and m.mined_height <= height
    out: list[tuple[Location, Explanation]] = []
    value_on_chain = mined and m.succeeded
    value_in_ledger = m.value_booked and m.counted
    # A final record that the ledger lacks although the chain has it is no
    # timing difference (an uncounted payment is final and known: explained).
    lacking = m.final and m.counted and value_on_chain and not value_in_ledger
    if value_on_chain != value_in_ledger and m.amount and not lacking:
        sign = 1 if value_on_chain else -1
        kind = _value_kind(m, value_on_chain)
        if m.destination is not None:
            out.append((m.destination, Explanation(kind, m.resource, sign * m.amount)))
        if m.source is not None:
            out.append((m.source, Explanation(kind, m.resource, -sign * m.amount)))
    fee_lacking = m.final and mined and not m.fee_booked
    if m.fee_from is not None and m.fee_wei and mined != m.fee_booked and not fee_lacking:
        sign = 1 if mined else -1
        suffix = "fee_in_flight" if mined else "fee_booked_after_height"
        out.append((m.fee_from, Explanation(f"{m.kind}_{suffix}", m.resource, -sign * m.fee_wei)))
    return out


@dataclass(frozen=True, slots=True)
class BalanceOutcome:
    differences: list[BalanceDifference]
    # Operator-managed locations seen for the first time: their opening gap.
    new_baselines: dict[Location, int]


def compare_balances(
    ledger: Mapping[Location, int],
    chain: Mapping[Location, int],
    movements: Iterable[Movement],
    height: int,
    baselines: Mapping[Location, int],
) -> BalanceOutcome:
    """Every location whose chain and ledger balances differ, with what
    explains the difference; `chain` must name every location the ledger
    attributes to an address (the caller read them all)."""
    for loc in ledger:
        assert loc.place is Place.LEDGER or loc in chain, f"no chain balance read for {loc}"
    for loc, balance in chain.items():
        assert loc.place is not Place.LEDGER and balance >= 0, (loc, balance)
    explained: dict[Location, list[Explanation]] = defaultdict(list)
    compared = set(ledger) | set(chain)
    for m in movements:
        for loc, explanation in timing(m, height):
            if loc in compared:
                explained[loc].append(explanation)
    differences: list[BalanceDifference] = []
    new_baselines: dict[Location, int] = {}
    # Most locations agree and nothing explains them: checked without building
    # anything (100,000 deposit addresses per run), sorted only when reported.
    for loc in compared:
        ledger_amount, chain_amount = ledger.get(loc, 0), chain.get(loc, 0)
        if (
            ledger_amount == chain_amount
            and loc not in explained
            and loc.place not in OPERATOR_PLACES
        ):
            continue
        items = list(explained.get(loc, ()))
        if loc.place in OPERATOR_PLACES:
            if loc in baselines:
                opening = baselines[loc]
            else:
                opening = chain_amount - ledger_amount - sum(e.amount for e in items)
                new_baselines[loc] = opening
            if opening:
                items.append(Explanation("opening_balance", loc.address, opening))
        unexplained = chain_amount - ledger_amount - sum(e.amount for e in items)
        if chain_amount != ledger_amount or unexplained:
            differences.append(
                BalanceDifference(loc, ledger_amount, chain_amount, tuple(items), unexplained)
            )
    differences.sort(key=lambda d: (d.location.asset, d.location.place, d.location.address))
    return BalanceOutcome(differences, new_baselines)


# -- transactions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainTransfer:
    index: int
    asset: str
    from_address: str
    to_address: str
    amount: int


@dataclass(frozen=True, slots=True)
class ChainTransaction:
    tx_hash: str
    status: str  # unknown | pending | succeeded | reverted
    height: int | None
    transfers: tuple[ChainTransfer, ...]


@dataclass(frozen=True, slots=True)
class Expected:
    """A confirmed record and what its transaction must show on chain."""

    resource: str
    tx_hash: str
    asset: str
    amount: int
    to_address: str
    from_address: str | None  # None: anyone (a customer paying)
    succeeded: bool  # False: a failed payout whose transaction landed and reverted
    index: int | None = None  # payments: the transfer's index in its transaction
    height: int | None = None  # payments: the block the core applied it in


class Verdict(StrEnum):
    PROVEN = "proven"  # matches, mined at or below the height: never checked again
    NOT_YET = "not_yet"  # mined above the height: checked by a later run
    MISMATCH = "mismatch"


def check_transaction(
    e: Expected, found: ChainTransaction | None, height: int
) -> tuple[Verdict, str]:
    """Whether the chain's transaction says what the record says; the detail
    names the first thing that disagrees."""
    if found is None or found.status in ("unknown", "pending") or found.height is None:
        state = "unknown to the node" if found is None else found.status
        return Verdict.MISMATCH, f"recorded as confirmed but the transaction is {state}"
    if found.height > height:
        return Verdict.NOT_YET, ""
    if e.height is not None and found.height != e.height:
        return Verdict.MISMATCH, f"recorded in block {e.height}, mined in block {found.height}"
    if not e.succeeded:
        if found.status != "reverted":
            return (
                Verdict.MISMATCH,
                f"recorded as failed on chain but the transaction {found.status}",
            )
        return Verdict.PROVEN, ""
    if found.status != "succeeded":
        return Verdict.MISMATCH, f"recorded as confirmed but the transaction {found.status}"
    candidates = [
        t for t in found.transfers if (e.index is None or t.index == e.index) and t.asset == e.asset
    ]
    if not candidates:
        return Verdict.MISMATCH, f"the transaction moves no {e.asset}" + (
            f" at index {e.index}" if e.index is not None else ""
        )
    for t in candidates:
        if (
            t.to_address == e.to_address
            and t.amount == e.amount
            and (e.from_address is None or t.from_address == e.from_address)
        ):
            return Verdict.PROVEN, ""
    t = candidates[0]
    if t.to_address != e.to_address:
        return Verdict.MISMATCH, f"recipient {t.to_address} on chain, {e.to_address} recorded"
    if t.amount != e.amount:
        return Verdict.MISMATCH, f"amount {t.amount} on chain, {e.amount} recorded"
    return Verdict.MISMATCH, f"sender {t.from_address} on chain, {e.from_address} recorded"


def settled_height(cursor_height: int, confirmations: Sequence[int]) -> int:
    """The height a run reads at: the core's applied cursor minus the deepest
    confirmation threshold of the chain, so a reorg the core would still
    follow cannot change what was compared."""
    assert cursor_height >= 0
    return max(0, cursor_height - max([1, *confirmations]))
