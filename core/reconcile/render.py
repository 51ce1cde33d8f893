"""Reconciliation runs and exception entries to their protobuf messages.

An area renderer: the writer needs the run's
message for the `reconciliation.mismatch` event in its own transaction, and
the edges (ReconciliationService, ExceptionService) answer with the same
bytes. Rows in, messages out; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from kassa.core.v1 import exception_pb2
from kassa.core.v1 import reconciliation_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KINDS = {
    "balance": pb.DIFFERENCE_KIND_BALANCE,
    "transaction": pb.DIFFERENCE_KIND_TRANSACTION,
    "unattributed": pb.DIFFERENCE_KIND_UNATTRIBUTED,
}
_STATES = {
    "open": exception_pb2.EXCEPTION_STATE_OPEN,
    "resolved": exception_pb2.EXCEPTION_STATE_RESOLVED,
}
_ACTIONS = {
    "acknowledge": exception_pb2.RESOLVE_ACTION_ACKNOWLEDGE,
    "rebaseline": exception_pb2.RESOLVE_ACTION_REBASELINE,
}


def timestamp(when: datetime) -> Timestamp:
    """By integer arithmetic: exact to the microsecond (stored times are aware)."""
    delta = when - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def name(run_id: str) -> str:
    return f"reconciliations/{run_id}"


def _amount(value: object) -> str:
    return "" if value is None else str(value)


def run(row: Mapping[str, Any], differences: Iterable[Mapping[str, Any]]) -> pb.Reconciliation:
    message = pb.Reconciliation(
        name=name(row["id"]),
        chain=row["chain"],
        height=row["height"],
        block_hash=row["block_hash"],
        locations_compared=row["locations_compared"],
        balances_compared=row["balances_compared"],
        transactions_compared=row["transactions_compared"],
        unexplained_count=row["unexplained_count"],
        start_time=timestamp(row["start_time"]),
        finish_time=timestamp(row["finish_time"]),
        trigger=row["trigger"],
        incremental=row["incremental"],
        since=name(row["since_run"]) if row["since_run"] else "",
    )
    for d in differences:
        message.differences.append(
            pb.Difference(
                kind=_KINDS[d["kind"]],
                chain=row["chain"],
                asset=d["asset"],
                location=d["location"],
                address=d["address"],
                ledger_amount=_amount(d["ledger_amount"]),
                chain_amount=_amount(d["chain_amount"]),
                unexplained_amount=str(d["unexplained_amount"]),
                explanations=[
                    pb.Explanation(kind=e["kind"], resource=e["resource"], amount=e["amount"])
                    for e in json.loads(d["explanations"])
                ],
                tx_hash=d["tx_hash"],
                resource=d["resource"],
                detail=d["detail"],
                unexplained=d["unexplained"],
            )
        )
    return message


def exception_entry(row: Mapping[str, Any]) -> exception_pb2.ExceptionEntry:
    entry = exception_pb2.ExceptionEntry(
        name=f"exceptions/{row['id']}",
        kind=row["kind"],
        resource=row["resource"],
        evidence=row["evidence"],
        detail=row["detail"],
        amount=_amount(row["amount"]),
        state=_STATES[row["state"]],
        create_time=timestamp(row["create_time"]),
        update_time=timestamp(row["update_time"]),
    )
    if row["resolve_time"] is not None:
        entry.resolve_action = _ACTIONS[row["resolve_action"]]
        entry.resolve_actor = row["resolve_actor"]
        entry.resolve_reason = row["resolve_reason"]
        entry.resolve_time.CopyFrom(timestamp(row["resolve_time"]))
    return entry
