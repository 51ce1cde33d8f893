"""A payment's status: where one transfer to a deposit address stands.

    (mempool) PENDING ──mined──▶ CONFIRMING ──threshold──▶ CONFIRMED
       │   zero-conf: CONFIRMED at once         │ ▲             │
       ▼                                         ▼ │ re-mined     ▼ shallow reorg
    REORGED (dropped, or its block left the chain) ◀───────── CONFIRMING

REORGED rows are kept as evidence; a re-inclusion revives the row (a new
ledger cycle, payments.inclusions + 1).
"""

from __future__ import annotations

import enum
from typing import assert_never


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"  # seen outside a block (mempool)
    CONFIRMING = "confirming"  # in a canonical block, below the invoice's threshold
    CONFIRMED = "confirmed"  # at or above the threshold (or a zero-conf sighting)
    REORGED = "reorged"  # dropped from the mempool or reorged out: never counted


def counts(status: PaymentStatus) -> bool:
    """Whether a payment in this status adds to its invoice's funds."""
    match status:
        case PaymentStatus.PENDING | PaymentStatus.CONFIRMING | PaymentStatus.CONFIRMED:
            return True
        case PaymentStatus.REORGED:
            return False
        case _:
            assert_never(status)
