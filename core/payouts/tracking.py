"""What the payout worker decides between its I/O steps, without I/O: fees
and their bump within the caps, how to treat a signer refusal, whether a
waiting payout's approvals are ready, what a broadcast or landed payout's
transactions on chain call for, and from which accounts a refund is paid.

Each function takes plain values the worker read (rows, adapter answers, the
clock) and returns a value the worker acts on; the state change itself is
still decided by `machine.decide`. Table-tested in
tests/unit/test_payout_tracking.py.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

from core.payouts import txbuilder

# -- fees ------------------------------------------------------------------------


@dataclass(frozen=True)
class FeeCaps:
    """The most a payout ever offers (wei per gas), replacements included."""

    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int


def bumped(old: int, percent: int = 12) -> int:
    """A replacement fee: at least +10% (what nodes require), rounded up."""
    return old + max(1, -(-old * percent // 100))


def fees(
    base_fee_per_gas_wei: int,
    priority_fee_per_gas_wei: int,
    caps: FeeCaps,
    at_least: txbuilder.Fees | None = None,
) -> txbuilder.Fees:
    """Fees from the chain's estimate; for a replacement (`at_least`, the last
    candidate's fees) +12% on both, whichever is higher, within the caps."""
    estimate = txbuilder.capped_fees(
        base_fee_per_gas_wei,
        priority_fee_per_gas_wei,
        caps.max_fee_per_gas_wei,
        caps.max_priority_fee_per_gas_wei,
    )
    if at_least is None:
        return estimate
    out = txbuilder.Fees(
        min(
            max(estimate.max_fee_per_gas_wei, bumped(at_least.max_fee_per_gas_wei)),
            caps.max_fee_per_gas_wei,
        ),
        min(
            max(
                estimate.max_priority_fee_per_gas_wei,
                bumped(at_least.max_priority_fee_per_gas_wei),
            ),
            caps.max_priority_fee_per_gas_wei,
        ),
    )
    assert out.max_fee_per_gas_wei <= caps.max_fee_per_gas_wei
    assert out.max_priority_fee_per_gas_wei <= caps.max_priority_fee_per_gas_wei
    return out


def can_bump(last: txbuilder.Fees, caps: FeeCaps, fixed: bool) -> bool:
    """Whether a replacement can outbid `last` (+10% at least, what nodes require)
    within the caps. A sweep (`fixed`) spends the gas it was funded with, no more."""
    return (
        not fixed
        and bumped(last.max_fee_per_gas_wei) <= caps.max_fee_per_gas_wei
        and bumped(last.max_priority_fee_per_gas_wei) <= caps.max_priority_fee_per_gas_wei
    )


# -- signer refusals -------------------------------------------------------------

APPROVALS_REQUIRED = "APPROVALS_REQUIRED"
APPROVAL_INVALID = "APPROVAL_INVALID"
# Approvals are checked (and an expiring body renewed) every second; other
# policy refusals wait for a policy change (SIGHUP) and are retried.
APPROVAL_POLL_S = 1.0
POLICY_RETRY_S = 30.0


@dataclass(frozen=True)
class RefusalPlan:
    renew_body: bool  # not a policy decision (e.g. REQUEST_EXPIRED): a fresh body next pass
    retry_after_s: float = 0.0
    forget_approvals: bool = False  # a bad approval would poison every retry
    approvers: tuple[str, ...] = ()
    approval_threshold: int = 0


def on_refusal(reason: str, is_policy: bool, metadata: Mapping[str, str]) -> RefusalPlan:
    if not is_policy:
        return RefusalPlan(renew_body=True)
    if reason == APPROVALS_REQUIRED:
        approvers = tuple(a for a in metadata.get("approvers", "").replace(" ", "").split(",") if a)
        threshold = metadata.get("threshold", "0") or "0"
        return RefusalPlan(
            renew_body=False,
            retry_after_s=APPROVAL_POLL_S,
            approvers=approvers,
            approval_threshold=int(threshold) if threshold.isdigit() else 0,
        )
    return RefusalPlan(
        renew_body=False, retry_after_s=POLICY_RETRY_S, forget_approvals=reason == APPROVAL_INVALID
    )


# -- approvals -------------------------------------------------------------------

# A body this close to its expiry is not worth sending: it could expire in flight.
EXPIRY_MARGIN_S = 3.0


class ApprovalStep(enum.Enum):
    WAIT = "wait"  # approvals still missing, the body still valid: look again soon
    SIGN = "sign"  # enough approvals of a valid body: reclaim its nonce and sign it
    RENEW = "renew"  # the body expired before enough approvals: a fresh one to approve
    RETRY = "retry"  # refused by another policy rule: allocate a nonce and try again


def expiring(expire_time: datetime, now: datetime) -> bool:
    return expire_time <= now + timedelta(seconds=EXPIRY_MARGIN_S)


def approval_step(
    waiting_reason: str, approvals: int, threshold: int, expire_time: datetime, now: datetime
) -> ApprovalStep:
    if waiting_reason != APPROVALS_REQUIRED:
        return ApprovalStep.RETRY
    if expiring(expire_time, now):
        return ApprovalStep.RENEW
    if approvals >= max(threshold, 1):
        return ApprovalStep.SIGN
    return ApprovalStep.WAIT


# -- chain tracking --------------------------------------------------------------


class Seen(enum.Enum):
    """A candidate transaction as the chain's adapter reports it."""

    UNKNOWN = "unknown"  # neither mined nor in the node's mempool
    PENDING = "pending"  # in the mempool
    SUCCEEDED = "succeeded"
    REVERTED = "reverted"


@dataclass(frozen=True)
class Candidate:
    tx_hash: str
    seen: Seen
    confirmations: int = 0
    fee_paid_wei: int = 0


class Move(enum.Enum):
    WAIT = "wait"
    LAND = "land"  # a candidate is mined deep enough: confirmed or failed
    REBROADCAST = "rebroadcast"  # the node forgot every candidate: send the stored bytes again
    REPLACE = "replace"  # stuck in the mempool: same nonce, higher fee
    NONCE_USED = "nonce_used"  # the nonce is used on chain by none of our candidates
    GAP = "gap"  # an earlier nonce of the key is missing on chain: no fee helps


@dataclass(frozen=True)
class Track:
    move: Move
    landed: Candidate | None = None


@dataclass(frozen=True)
class Timing:
    replace_after_s: float
    rebroadcast_after_s: float


def track_broadcast(
    candidates: Sequence[Candidate],
    confirmations_needed: int,
    nonce: int,
    chain_latest_nonce: int,
    sent_at: datetime,
    now: datetime,
    timing: Timing,
) -> Track:
    """A broadcast payout's next move, from its candidates as the chain shows
    them (oldest first) and its key's nonce on chain (mined transactions)."""
    assert candidates, "a broadcast payout has at least one signed candidate"
    mined = [c for c in candidates if c.seen in (Seen.SUCCEEDED, Seen.REVERTED)]
    if mined:
        # Same nonce for all: at most one of them is on the canonical chain
        # (two answers can disagree only across a reorg; the next pass sees one).
        if mined[0].confirmations >= confirmations_needed:
            return Track(Move.LAND, mined[0])
        return Track(Move.WAIT)
    waited = now - sent_at
    if all(c.seen is Seen.UNKNOWN for c in candidates):
        if chain_latest_nonce > nonce:
            return Track(Move.NONCE_USED)
        if waited >= timedelta(seconds=timing.rebroadcast_after_s):
            # Dropped by the node (evicted, reorged out, or our own node restarted).
            return Track(Move.REBROADCAST)
        return Track(Move.WAIT)
    if chain_latest_nonce < nonce:
        # In the mempool behind a missing earlier nonce: a higher fee would not
        # help; the earlier payout is resent (or the nonce reconciled) instead.
        return Track(Move.GAP)
    if waited >= timedelta(seconds=timing.replace_after_s):
        return Track(Move.REPLACE)
    return Track(Move.WAIT)


class Settle(enum.Enum):
    WAIT = "wait"  # landed, not yet past the finality depth
    FINALIZE = "finalize"  # past the finality depth: nothing can undo it now
    REORGED = "reorged"  # no longer on the canonical chain: back to broadcast


def track_landed(landed: Candidate, finality_depth: int) -> Settle:
    """A confirmed (or reverted) payout's landed transaction, until final."""
    match landed.seen:
        case Seen.SUCCEEDED | Seen.REVERTED:
            if landed.confirmations >= finality_depth:
                return Settle.FINALIZE
            return Settle.WAIT
        case Seen.UNKNOWN | Seen.PENDING:
            return Settle.REORGED
        case _:
            assert_never(landed.seen)


# -- refund legs -----------------------------------------------------------------


class RefundRefused(ValueError):
    def __init__(self, refundable: int) -> None:
        super().__init__(f"at most {refundable} can be refunded")
        self.refundable = refundable


# The order a refund draws on the merchant's accounts: the excess first (it
# was never the merchant's), then what is still unsettled in incoming
# (underpaid invoices), then the merchant's available balance.
REFUND_SOURCES = ("refunds_payable", "incoming", "available")


def refund_amount(requested: int | None, received: int, refunded: int, in_progress: int) -> int:
    """The amount a refund pays (None: everything not yet refunded)."""
    remaining = received - refunded - in_progress
    amount = remaining if requested is None else requested
    if amount <= 0 or amount > remaining:
        raise RefundRefused(max(remaining, 0))
    return amount


def refund_legs(amount: int, room: Mapping[str, int]) -> list[tuple[str, int]]:
    """Hold legs (source account kind, amount) for a refund of `amount`, given
    the room left in refunds_payable and incoming; available takes the rest."""
    assert amount > 0
    legs: list[tuple[str, int]] = []
    left = amount
    for source in REFUND_SOURCES[:-1]:
        take = min(left, max(room.get(source, 0), 0))
        if take:
            legs.append((source, take))
            left -= take
    if left:
        legs.append((REFUND_SOURCES[-1], left))
    assert sum(a for _, a in legs) == amount and all(a > 0 for _, a in legs)
    return legs
