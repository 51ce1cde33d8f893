"""Queue items and support actions to their protobuf messages. Rows in, messages out; no I/O."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from core.render.timestamps import timestamp
from core.support import decide
from core.support.actions import name
from core.support.queue import Item
from kassa.core.v1 import support_pb2 as pb

# Enum values by name (the constructors take names; requests carry numbers).
KIND = {k: f"ITEM_KIND_{k.name}" for k in decide.Kind}
KIND_OF = {pb.ItemKind.Value(v): k for k, v in KIND.items()}
ACTION = {a: f"ACTION_TYPE_{a.name}" for a in decide.Action}
_STATE = {
    "done": "SUPPORT_ACTION_STATE_DONE",
    "pending_approval": "SUPPORT_ACTION_STATE_PENDING_APPROVAL",
    "rejected": "SUPPORT_ACTION_STATE_REJECTED",
    "withdrawn": "SUPPORT_ACTION_STATE_WITHDRAWN",
}


def item(i: Item, now: datetime) -> pb.SupportItem:
    f = i.finding
    message = pb.SupportItem(
        kind=KIND[f.kind],
        subject=i.subject,
        since_time=timestamp(i.since),
        age_seconds=max(int((now - i.since).total_seconds()), 0),
        amount="" if f.amount is None else str(f.amount),
        asset=i.asset,
        detail=i.detail,
        actions=[ACTION[a] for a in f.actions],
    )
    for kind, ref, detail, when in i.evidence:
        e = message.evidence.add(type=kind, ref=ref, detail=detail)
        if when is not None:
            e.time.CopyFrom(timestamp(when))
    if i.review is not None:
        message.review_actor, message.review_reason = i.review
    return message


def action(row: asyncpg.Record) -> pb.SupportAction:
    message = pb.SupportAction(
        name=name(row["id"]),
        action=ACTION[decide.Action(row["action"])],
        kind=KIND[decide.Kind(row["kind"])],
        subject=row["subject"],
        reason=row["reason"],
        actor=row["actor"],
        state=_STATE[row["state"]],
        result=row["result"],
        destination=row["destination"],
        amount="" if row["amount"] is None else str(row["amount"]),
        tx_hash=row["tx_hash"],
        approver=row["approver"] or "",
        create_time=timestamp(row["create_time"]),
        decider=row["decider"] or "",
        decide_reason=row["decide_reason"] or "",
    )
    if row["approve_time"] is not None:
        message.approve_time.CopyFrom(timestamp(row["approve_time"]))
    if row["decide_time"] is not None:
        message.decide_time.CopyFrom(timestamp(row["decide_time"]))
    return message
