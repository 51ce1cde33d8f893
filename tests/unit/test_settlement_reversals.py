"""Settlement across reorgs (issue 19), pure: `settlement.plan` with the
ledger's own rules (`rules.decide`) and the invoices' decider (`state.decide`).

A merchant's invoices are paid, refunded (from refunds payable, incoming or
available, as the payout service draws them), its available balance paid
out, and payments reorged out and back, in any order. The property: no
sequence makes the ledger refuse a posting — no flagged account (incoming,
available, refunds payable, payouts in flight, the receivable) goes against
its flag, so the chain follower never stops — debits equal credits, and what
the receivable holds is exactly what the invoices say is owed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core.invoices import state as sm
from core.ledger import accounts as chart
from core.ledger import settlement
from core.ledger.rules import Account, Stored, Transfer, TransferFlags, decide
from core.ledger.settlement import Leg, Position, Settled, Target, plan
from core.payouts import tracking

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"
M = "m"
DUE = 25
NOW = datetime(2030, 1, 1, tzinfo=UTC)
EXPIRY = datetime(2031, 1, 1, tzinfo=UTC)


def acct(kind: str) -> str:
    return chart.merchant_account(M, ASSET, kind)


@dataclass
class Inv:
    invoice: sm.Invoice
    on_chain: dict[int, int] = field(default_factory=dict)  # payment id -> amount
    off_chain: dict[int, int] = field(default_factory=dict)  # reorged out
    have: Settled = field(default_factory=Settled)
    drawn: dict[str, int] = field(default_factory=dict)
    in_progress: int = 0


class Ledger:
    def __init__(self) -> None:
        accounts = [
            *chart.platform_accounts(ASSET),
            *chart.location_accounts(ASSET),
            *chart.merchant_accounts(M, ASSET),
            Account(chart.in_flight(M, ASSET), ASSET, chart.IN_FLIGHT, chart.NEVER_NEGATIVE),
        ]
        self.accounts = {a.id: a for a in accounts}
        self.stored: dict[str, Stored] = {}
        self.n = 0

    def id(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def post(self, batch: list[Transfer]) -> None:
        outcome = decide(batch, self.accounts, self.stored, NOW)
        refused = [(t, r) for t, r in zip(batch, outcome.results, strict=True) if not r.ok]
        # What stops the chain follower (LedgerRefusedError): never.
        assert not refused, refused
        for account_id, d in outcome.deltas.items():
            a = self.accounts[account_id]
            self.accounts[account_id] = replace(a, balances=a.balances + d)
        for t in outcome.writes:
            self.stored[t.id] = Stored(t, NOW)
        # Debits equal credits, posted and pending.
        posted = sum(
            a.balances.debits_posted - a.balances.credits_posted for a in self.accounts.values()
        )
        pending = sum(
            a.balances.debits_pending - a.balances.credits_pending for a in self.accounts.values()
        )
        assert posted == pending == 0

    def free(self, kind: str) -> int:
        b = self.accounts[acct(kind)].balances
        return b.credits_posted - b.debits_posted - b.debits_pending

    def move(self, debit: str, credit: str, amount: int, flags: int = 0) -> Transfer:
        return Transfer(self.id(), debit, credit, amount, ASSET, code=1, flags=flags)


def settle(ledger: Ledger, inv: Inv) -> list[Transfer]:
    """The settlement's transfers for `inv` as it now stands (the writer's loop)."""
    decided = plan(
        settlement.target(inv.invoice),
        inv.have,
        Position(
            inv.invoice.funds.confirmed,
            dict(inv.drawn),
            {k: ledger.free(k) for k in settlement.KINDS},
        ),
    )
    inv.have = replace(decided.settled, transfers=inv.have.transfers + len(decided.legs))
    return [ledger.move(acct(g.debit), acct(g.credit), g.amount) for g in decided.legs]


def observe(inv: Inv) -> None:
    funds = sm.Funds(confirmed=sum(inv.on_chain.values()))
    inv.invoice = sm.decide(inv.invoice, sm.FundsObserved(funds)).invoice


Step = tuple[str, int, int]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["pay", "reorg", "back", "refund", "payout"]),
            st.integers(0, 2),  # which invoice
            st.integers(1, 40),  # an amount
        ),
        max_size=30,
    )
)
def test_no_sequence_of_payments_refunds_payouts_and_reorgs_breaks_a_flag(
    steps: list[Step],
) -> None:
    ledger = Ledger()
    invs = [Inv(sm.Invoice(sm.State.AWAITING_PAYMENT, DUE, EXPIRY)) for _ in range(3)]
    next_payment = 0
    for action, which, amount in steps:
        inv = invs[which]
        if action == "pay":
            next_payment += 1
            inv.on_chain[next_payment] = amount
            ledger.post([ledger.move(chart.custody(ASSET), acct("incoming"), amount)])
            observe(inv)
            ledger.post(settle(ledger, inv))
        elif action in ("reorg", "back"):
            source, dest = (
                (inv.on_chain, inv.off_chain)
                if action == "reorg"
                else (inv.off_chain, inv.on_chain)
            )
            if not source:
                continue
            payment = sorted(source)[amount % len(source)]
            paid = source.pop(payment)
            dest[payment] = paid
            observe(inv)
            if action == "reorg":
                # As the applier: the settlement's reversal, then the payment's.
                ledger.post(settle(ledger, inv))
                ledger.post([ledger.move(acct("incoming"), chart.custody(ASSET), paid)])
            else:
                ledger.post([ledger.move(chart.custody(ASSET), acct("incoming"), paid)])
                ledger.post(settle(ledger, inv))
        elif action == "refund":
            room_total = sm.refundable(inv.invoice) - inv.in_progress
            if room_total <= 0:
                continue
            refund = min(amount, room_total)
            room = {
                "refunds_payable": inv.have.excess
                - inv.have.owed_excess
                - inv.drawn.get("refunds_payable", 0),
                "incoming": inv.invoice.funds.confirmed
                - inv.have.available
                - inv.have.excess
                + inv.have.owed_incoming
                - inv.drawn.get("incoming", 0),
            }
            legs = tracking.refund_legs(refund, room)
            if any(ledger.free(k) < a for k, a in legs):
                continue  # refused with INSUFFICIENT_FUNDS, as the payout service does
            holds = [
                ledger.move(acct(k), chart.in_flight(M, ASSET), a, TransferFlags.PENDING)
                for k, a in legs
            ]
            ledger.post(holds)
            ledger.post(
                [
                    Transfer(ledger.id(), flags=TransferFlags.POST_PENDING, pending_id=h.id)
                    for h in holds
                ]
                + [ledger.move(chart.in_flight(M, ASSET), chart.hot(ASSET), refund)]
            )
            for k, a in legs:
                inv.drawn[k] = inv.drawn.get(k, 0) + a
            decided = sm.decide(inv.invoice, sm.RefundSettled(refund))
            assert decided.refusal is None, decided
            inv.invoice = decided.invoice
            ledger.post(settle(ledger, inv))
        elif action == "payout":
            pay = min(amount, ledger.free("available"))
            if pay <= 0:
                continue
            ledger.post(
                [
                    ledger.move(acct("available"), chart.in_flight(M, ASSET), pay),
                    ledger.move(chart.in_flight(M, ASSET), chart.hot(ASSET), pay),
                ]
            )
        # The receivable holds exactly what the invoices' settlements say is owed.
        receivable = ledger.accounts[acct("receivable")].balances
        owed = sum(i.have.owed for i in invs)
        assert receivable.debits_posted - receivable.credits_posted == owed
    # Every invoice back on chain in full: nothing is owed any more.
    for inv in invs:
        while inv.off_chain:
            payment, paid = inv.off_chain.popitem()
            inv.on_chain[payment] = paid
            ledger.post([ledger.move(chart.custody(ASSET), acct("incoming"), paid)])
            observe(inv)
            ledger.post(settle(ledger, inv))
    if all(i.invoice.state is not sm.State.REFUNDED for i in invs):
        assert sum(i.have.owed for i in invs) == 0


def test_a_refunded_excess_reorged_out_is_owed_not_taken_from_another_invoice() -> None:
    """Overpaid 30 for 25, the 5 refunded; a reorg removes the payment: available
    gives back its 25, the refunded 5 is booked to the receivable."""
    have = Settled(available=25, excess=5, transfers=2)
    decided = plan(
        Target(0, 0),
        have,
        Position(0, {"refunds_payable": 5}, {"available": 25, "refunds_payable": 7}),
    )
    assert set(decided.legs) == {
        Leg("available", "incoming", 25),
        Leg("receivable", "incoming", 5, "refunds_payable"),
    }
    assert decided.settled.owed == decided.booked_owed == 5
    # Included again: the receivable is paid back first, refunds payable stays as it is.
    back = plan(Target(25, 5), decided.settled, Position(30, {"refunds_payable": 5}, {}))
    assert set(back.legs) == {
        Leg("incoming", "available", 25),
        Leg("incoming", "receivable", 5, "refunds_payable"),
    }
    assert back.settled.owed == 0


def test_a_paid_out_invoice_reorged_out_books_what_available_lacks() -> None:
    decided = plan(
        Target(0, 0), Settled(available=25, transfers=1), Position(0, {}, {"available": 10})
    )
    assert set(decided.legs) == {
        Leg("available", "incoming", 10),
        Leg("receivable", "incoming", 15, "available"),
    }
    # Refills of incoming come before anything leaves it.
    assert [g.credit for g in decided.legs] == ["incoming", "incoming"]


def test_a_refunded_invoice_reorged_out_keeps_incoming_covered() -> None:
    """Refunded in full from available (state refunded: settlement frozen); the
    payment goes: its reversal would take incoming below zero without the receivable."""
    decided = plan(None, Settled(available=25, transfers=1), Position(0, {"available": 25}, {}))
    assert decided.legs == (Leg("receivable", "incoming", 25, "incoming"),)
