"""Ledger transfers, accounts and posting results to kassa.ledger.v1 messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from core.ledger.rules import Account, AccountFlags, Result, TransferFlags
from core.render.timestamps import timestamp
from kassa.ledger.v1 import ledger_pb2 as pb


def transfer_message(row: asyncpg.Record) -> pb.Transfer:
    flags = row["flags"]
    return pb.Transfer(
        id=row["id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=str(row["amount"]),
        asset=row["asset"],
        code=row["code"],
        linked=bool(flags & TransferFlags.LINKED),
        pending=bool(flags & TransferFlags.PENDING),
        post_pending=bool(flags & TransferFlags.POST_PENDING),
        void_pending=bool(flags & TransferFlags.VOID_PENDING),
        pending_id=row["pending_id"] or "",
        timeout_s=row["timeout_s"],
        reference=row["reference"],
        user_data=row["user_data"],
        create_time=timestamp(row["create_time"]),
    )


def account_message(a: Account, create_time: datetime | None = None) -> pb.Account:
    b = a.balances
    message = pb.Account(
        id=a.id,
        asset=a.asset,
        code=a.code,
        debits_must_not_exceed_credits=bool(a.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
        credits_must_not_exceed_debits=bool(a.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
        user_data=a.user_data,
        debits_pending=str(b.debits_pending),
        debits_posted=str(b.debits_posted),
        credits_pending=str(b.credits_pending),
        credits_posted=str(b.credits_posted),
    )
    if create_time is not None:
        message.create_time.CopyFrom(timestamp(create_time))
    return message


def results_message(ids: Sequence[str], results: Sequence[Result]) -> list[pb.CreateResult]:
    return [
        pb.CreateResult(id=i, reason=r.reason or "", field=r.field, existed=r.existed)
        for i, r in zip(ids, results, strict=True)
    ]
