"""Payout and sweep rows as kassa.core.v1 Payout and Sweep messages (API answers
and event payloads). Rows in, messages out; the rows beside a payout (its
transactions, approvals) come from core/payouts/store.py."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from core import names
from core.payouts.machine import State
from core.render.timestamps import timestamp
from kassa.core.v1 import payout_pb2 as pb

STATE = {
    State.CREATED: pb.PAYOUT_STATE_CREATED,
    State.SIGNING: pb.PAYOUT_STATE_SIGNING,
    State.WAITING_APPROVAL: pb.PAYOUT_STATE_WAITING_APPROVAL,
    State.SIGNED: pb.PAYOUT_STATE_SIGNED,
    State.BROADCAST: pb.PAYOUT_STATE_BROADCAST,
    State.CONFIRMED: pb.PAYOUT_STATE_CONFIRMED,
    State.FAILED: pb.PAYOUT_STATE_FAILED,
    State.CANCELLED: pb.PAYOUT_STATE_CANCELLED,
}
STATE_NAME = {v: k.value for k, v in STATE.items()}
_TX_STATUS = {
    "candidate": pb.PAYOUT_TRANSACTION_STATUS_CANDIDATE,
    "landed": pb.PAYOUT_TRANSACTION_STATUS_LANDED,
    "dropped": pb.PAYOUT_TRANSACTION_STATUS_DROPPED,
}


def payout(
    row: asyncpg.Record,
    transactions: Sequence[asyncpg.Record] = (),
    approvals: Sequence[str] = (),
) -> pb.Payout:
    out = pb.Payout(
        name=names.payout(row["merchant_id"], row["id"]),
        kind=pb.PAYOUT_KIND_REFUND if row["kind"] == "refund" else pb.PAYOUT_KIND_PAYOUT,
        invoice=(names.invoice(row["merchant_id"], row["invoice_id"]) if row["invoice_id"] else ""),
        chain=row["chain"],
        asset=row["asset"],
        destination=row["destination"],
        amount=str(row["amount"]),
        reference=row["reference"],
        state=STATE[State(row["state"])],
        tx_hash=row["landed_tx_hash"] or (transactions[-1]["tx_hash"] if transactions else ""),
        network_fee="" if row["network_fee"] is None else str(row["network_fee"]),
        waiting_reason=row["waiting_reason"] if row["state"] == State.WAITING_APPROVAL else "",
        required_approvers=list(row["required_approvers"]),
        approval_threshold=row["approval_threshold"],
        approvals=sorted(approvals),
        failure_reason=row["failure_reason"],
        create_time=timestamp(row["create_time"]),
        update_time=timestamp(row["update_time"]),
    )
    if row["nonce"] is not None and (transactions or row["state"] == State.SIGNING):
        out.nonce = int(row["nonce"])
    for t in transactions:
        out.transactions.append(
            pb.PayoutTransaction(
                tx_hash=t["tx_hash"],
                max_fee_per_gas=str(t["max_fee_per_gas"]),
                max_priority_fee_per_gas=str(t["max_priority_fee_per_gas"]),
                status=_TX_STATUS[t["status"]],
                create_time=timestamp(t["create_time"]),
            )
        )
    if row["state"] == State.WAITING_APPROVAL and row["sign_body"] is not None:
        out.sign_request.CopyFrom(
            pb.SignRequestToApprove(
                body=bytes(row["sign_body"]),
                body_digest=bytes(row["sign_digest"]).hex(),
                expire_time=timestamp(row["sign_expire_time"]),
            )
        )
    if row["confirm_time"] is not None:
        out.confirm_time.CopyFrom(timestamp(row["confirm_time"]))
    return out


def sweep(
    row: asyncpg.Record, transactions: Sequence[asyncpg.Record] = (), invoice_merchant: str = ""
) -> pb.Sweep:
    """A sweep or gas funding (a platform row of the payouts table) as a Sweep."""
    # The payout rendering of the same row: state, candidates, nonce, fee, times.
    common = payout(row, transactions)
    out = pb.Sweep(
        name=names.sweep(row["id"]),
        kind=pb.SWEEP_KIND_GAS_FUNDING if row["kind"] == "gas_funding" else pb.SWEEP_KIND_SWEEP,
        chain=row["chain"],
        asset=row["asset"],
        source_address=row["source_address"] or "",
        destination=row["destination"],
        amount=str(row["amount"]),
        key_id=row["key_id"],
        invoice=(
            names.invoice(invoice_merchant, row["invoice_id"])
            if row["invoice_id"] and invoice_merchant
            else ""
        ),
        gas_funding=names.sweep(row["funded_by"]) if row["funded_by"] else "",
        state=common.state,
        tx_hash=common.tx_hash,
        transactions=common.transactions,
        network_fee=common.network_fee,
        max_fee_per_gas="" if row["fixed_max_fee"] is None else str(row["fixed_max_fee"]),
        waiting_reason=common.waiting_reason,
        failure_reason=row["failure_reason"],
        create_time=common.create_time,
        update_time=common.update_time,
    )
    if common.HasField("nonce"):
        out.nonce = common.nonce
    if common.HasField("confirm_time"):
        out.confirm_time.CopyFrom(common.confirm_time)
    return out
