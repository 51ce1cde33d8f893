"""The one decider of the support queue: what a subject's state says needs a
person, and which actions are safe for it now.

Pure: given the facts of one subject (an invoice, a payout, a webhook
endpoint's failing deliveries, an open reconciliation exception) it returns
its findings — (kind, actions, amount, fingerprint) — and, given the notes
operators left on it (acknowledgements, top-up requests), whether each is
still shown. The queue (core/support/queue.py) and the actions' writer
(core/support/actions.py) both ask it, so an action is only ever taken on a
subject whose current state offers it: nothing is decided from a stale list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import assert_never


class Kind(StrEnum):
    INVOICE_UNDERPAID = "invoice_underpaid"
    INVOICE_OVERPAID = "invoice_overpaid"
    INVOICE_PAID_LATE = "invoice_paid_late"
    INVOICE_DUPLICATE = "invoice_duplicate"
    INVOICE_WRONG_ASSET = "invoice_wrong_asset"
    INVOICE_WRONG_NETWORK = "invoice_wrong_network"
    PAYOUT_WAITING_APPROVAL = "payout_waiting_approval"
    PAYOUT_STUCK = "payout_stuck"
    WEBHOOK_ENDPOINT_FAILING = "webhook_endpoint_failing"
    RECONCILIATION_MISMATCH = "reconciliation_mismatch"


class Action(StrEnum):
    ACCEPT_AS_PAID = "accept_as_paid"
    REQUEST_TOP_UP = "request_top_up"
    REFUND_EXCESS = "refund_excess"
    REFUND_WHOLE = "refund_whole"
    MARK_FOR_REVIEW = "mark_for_review"
    ATTACH_TRANSACTION = "attach_transaction"
    REDELIVER_WEBHOOKS = "redeliver_webhooks"
    ACKNOWLEDGE = "acknowledge"
    REBASELINE = "rebaseline"


# The scope each action needs (core/merchants/credentials.py): accepting
# money as paid and sending money back are each their own grant.
SCOPE = {
    Action.ACCEPT_AS_PAID: "support:accept",
    Action.REQUEST_TOP_UP: "support:write",
    Action.REFUND_EXCESS: "support:refund",
    Action.REFUND_WHOLE: "support:refund",
    Action.MARK_FOR_REVIEW: "support:write",
    Action.ATTACH_TRANSACTION: "support:write",
    Action.REDELIVER_WEBHOOKS: "support:write",
    Action.ACKNOWLEDGE: "support:write",
    # The grant that resolves exceptions (ExceptionService) re-baselines too.
    Action.REBASELINE: "exceptions:write",
}
assert set(SCOPE) == set(Action)
# Moving money, closing an invoice short, or accepting a custody gap as the
# new normal (which would otherwise hide a loss from every later
# reconciliation): a second operator's approval when
# `[support] require_second_approval` is set.
DANGEROUS = frozenset(
    {Action.ACCEPT_AS_PAID, Action.REFUND_EXCESS, Action.REFUND_WHOLE, Action.REBASELINE}
)
# Notes: actions that change nothing but what the queue shows.
NOTES = frozenset(
    {Action.REQUEST_TOP_UP, Action.MARK_FOR_REVIEW, Action.ATTACH_TRANSACTION, Action.ACKNOWLEDGE}
)

# Payout states (core/payouts/machine.py) that are final.
_PAYOUT_FINAL = frozenset({"confirmed", "failed", "cancelled"})
# Invoice states in which the amount due stays with the merchant.
_KEPT = frozenset({"paid", "overpaid"})


@dataclass(frozen=True)
class InvoiceFacts:
    chain: str
    asset: str
    state: str
    flags: frozenset[str]
    amount_due: int
    received: int  # confirmed, counted
    refunded: int  # refunds confirmed
    refunding: int  # refunds created, not yet final
    other_assets: frozenset[str]  # CAIP-19 ids of uncounted transfers (wrong asset or network)

    def __post_init__(self) -> None:
        assert self.amount_due > 0, self
        assert min(self.received, self.refunded, self.refunding) >= 0, self

    @property
    def held(self) -> int:
        """What the invoice received and no refund returns yet."""
        return max(self.received - self.refunded - self.refunding, 0)

    @property
    def excess(self) -> int:
        """What it holds beyond what the merchant keeps (the amount due, when paid)."""
        kept = self.amount_due if self.state in _KEPT else 0
        return max(self.received - kept - self.refunded - self.refunding, 0)


@dataclass(frozen=True)
class PayoutFacts:
    state: str
    age_s: float  # since it was created
    stuck_after_s: float
    amount: int


@dataclass(frozen=True)
class EndpointFacts:
    gave_up: int  # deliveries that stopped retrying
    retrying: int  # pending deliveries at or past the failing threshold

    def __post_init__(self) -> None:
        assert self.gave_up >= 0 and self.retrying >= 0, self


@dataclass(frozen=True)
class MismatchFacts:
    amount: int  # what nothing explains, signed
    # A hot key's or treasury's balance gap: funds moved outside Kassa can be
    # accepted as its new baseline (core/reconcile/exceptions.py).
    rebaselinable: bool = False


Facts = InvoiceFacts | PayoutFacts | EndpointFacts | MismatchFacts


@dataclass(frozen=True)
class Finding:
    kind: Kind
    actions: tuple[Action, ...]
    amount: int | None  # base units; None where none applies
    # The facts it was found from: an acknowledgement holds while they do.
    fingerprint: str


def _chain_of(asset: str) -> str:
    chain, _, _ = asset.partition("/")
    return chain


def _invoice(f: InvoiceFacts) -> list[Finding]:
    facts = (f.state, ",".join(sorted(f.flags)), f.received, f.refunded, f.refunding)
    fingerprint = "|".join(map(str, (*facts, ",".join(sorted(f.other_assets)))))
    found: list[Finding] = []
    marked = "marked" in f.flags
    whole = (Action.REFUND_WHOLE,) if f.held > 0 else ()
    excess = (Action.REFUND_EXCESS,) if f.excess > 0 else ()
    review = (Action.MARK_FOR_REVIEW, Action.ATTACH_TRANSACTION, Action.ACKNOWLEDGE)
    if f.state == "underpaid" and not marked:
        found.append(
            Finding(
                Kind.INVOICE_UNDERPAID,
                (Action.ACCEPT_AS_PAID, Action.REQUEST_TOP_UP, *whole, *review),
                max(f.amount_due - f.received, 0),
                fingerprint,
            )
        )
    if "duplicate" in f.flags and f.excess > 0:
        found.append(
            Finding(Kind.INVOICE_DUPLICATE, (*excess, *whole, *review), f.excess, fingerprint)
        )
    elif "paid_over" in f.flags and f.excess > 0:
        found.append(
            Finding(Kind.INVOICE_OVERPAID, (*excess, *whole, *review), f.excess, fingerprint)
        )
    if "paid_late" in f.flags:
        found.append(Finding(Kind.INVOICE_PAID_LATE, (*whole, *review), f.received, fingerprint))
    chains = {_chain_of(a) for a in f.other_assets}
    if f.chain in chains or ("wrong_asset" in f.flags and not chains):
        found.append(Finding(Kind.INVOICE_WRONG_ASSET, review, None, fingerprint))
    if chains - {f.chain}:
        found.append(Finding(Kind.INVOICE_WRONG_NETWORK, review, None, fingerprint))
    return found


def classify(facts: Facts) -> list[Finding]:
    """Everything about one subject that needs a person now, with its safe actions."""
    review = (Action.MARK_FOR_REVIEW, Action.ATTACH_TRANSACTION, Action.ACKNOWLEDGE)
    match facts:
        case InvoiceFacts():
            found = _invoice(facts)
        case PayoutFacts(state, age_s, stuck_after_s, amount):
            if state == "waiting_approval":
                found = [Finding(Kind.PAYOUT_WAITING_APPROVAL, review, amount, state)]
            elif state not in _PAYOUT_FINAL and age_s >= stuck_after_s:
                found = [Finding(Kind.PAYOUT_STUCK, review, amount, state)]
            else:
                found = []
        case EndpointFacts(gave_up, retrying):
            found = []
            if gave_up or retrying:
                actions = (Action.REDELIVER_WEBHOOKS, Action.MARK_FOR_REVIEW, Action.ACKNOWLEDGE)
                found = [
                    Finding(Kind.WEBHOOK_ENDPOINT_FAILING, actions, None, f"{gave_up}|{retrying}")
                ]
        case MismatchFacts(amount, rebaselinable):
            rebaseline = (Action.REBASELINE,) if rebaselinable else ()
            actions = (Action.MARK_FOR_REVIEW, Action.ATTACH_TRANSACTION, Action.ACKNOWLEDGE)
            found = [
                Finding(Kind.RECONCILIATION_MISMATCH, (*actions, *rebaseline), amount, str(amount))
            ]
        case _:
            assert_never(facts)
    kinds = [f.kind for f in found]
    assert len(kinds) == len(set(kinds)), found  # one finding per kind and subject
    for f in found:
        assert f.actions and len(set(f.actions)) == len(f.actions), f
        # Money moves only where there is money to move.
        if isinstance(facts, InvoiceFacts):
            assert Action.REFUND_EXCESS not in f.actions or facts.excess > 0, (facts, f)
            assert Action.REFUND_WHOLE not in f.actions or facts.held > 0, (facts, f)
            assert Action.ACCEPT_AS_PAID not in f.actions or facts.state == "underpaid"
        # Only a location's own balance gap moves its baseline.
        assert Action.REBASELINE not in f.actions or (
            isinstance(facts, MismatchFacts) and facts.rebaselinable
        ), (facts, f)
    return found


@dataclass(frozen=True)
class Note:
    """An operator's earlier note on a subject (an action of NOTES)."""

    kind: Kind
    action: Action
    fingerprint: str
    until: datetime | None  # a top-up request: shown again after this


def shown(finding: Finding, notes: Iterable[Note], now: datetime) -> bool:
    """Whether the finding is still for a person: not acknowledged with the
    same facts, not waiting for a requested top-up."""
    for note in notes:
        if note.kind is not finding.kind:
            continue
        match note.action:
            case Action.ACKNOWLEDGE:
                if note.fingerprint == finding.fingerprint:
                    return False
            case Action.REQUEST_TOP_UP:
                if note.fingerprint == finding.fingerprint and (
                    note.until is None or now < note.until
                ):
                    return False
            case (
                Action.MARK_FOR_REVIEW
                | Action.ATTACH_TRANSACTION
                | Action.ACCEPT_AS_PAID
                | Action.REFUND_EXCESS
                | Action.REFUND_WHOLE
                | Action.REDELIVER_WEBHOOKS
                | Action.REBASELINE
            ):
                pass  # shown with the item, or acted on the state itself
            case _:
                assert_never(note.action)
    return True


def offered(facts: Facts, kind: Kind, action: Action) -> Finding | None:
    """The finding of `kind` on the subject if it offers `action` now, else None."""
    for f in classify(facts):
        if f.kind is kind and action in f.actions:
            return f
    return None
