"""Payments in the ledger, posted in the chain applier's transaction.

The accounts (core/ledger/accounts.py): a payment moves platform:custody
and the merchant's incoming, available and refunds_payable.

Each payment goes through numbered cycles (payments.inclusions): a cycle
opens with a pending transfer custody -> incoming when the payment is
included, is posted when it confirms, and closes with a void (reorged while
pending) or a reversing transfer incoming -> custody (reorged after posting,
or un-confirmed by a shallow reorg, which also opens the next cycle). Ids are
pay:{chain}:{tx_hash}:{index}:{cycle}:{step}, so replaying a block posts
nothing twice and every cycle has transfers of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from core import names
from core.ledger import store
from core.ledger.accounts import custody, merchant_account, merchant_accounts, platform_accounts
from core.ledger.rules import Account, Transfer, TransferFlags

# Transfer codes.
PAYMENT, REVERSAL = 1, 2
# Flags as plain ints: an IntFlag in a transfer makes every flag test in the
# rules go through the enum machinery (15,000 transfers per heavy block).
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING)
_VOID = int(TransferFlags.VOID_PENDING)


class LedgerRefusedError(RuntimeError):
    """A payment posting was refused: a bug or a tampered ledger, never routine."""


def transfer_id(chain: str, row: asyncpg.Record, cycle: int, step: str) -> str:
    return f"pay:{chain}:{row['tx_hash']}:{row['transfer_index']}:{cycle}:{step}"


async def _merchants(
    conn: asyncpg.Connection,
    rows: Sequence[asyncpg.Record],
    known: Mapping[str, str] | None = None,
) -> Mapping[str, str]:
    """Invoice id -> merchant id (read, unless the caller knows them), creating
    the accounts the rows need."""
    if known is None:
        found = await conn.fetch(
            "SELECT id, merchant_id FROM invoices WHERE id = ANY($1::text[])",
            list({r["invoice_id"] for r in rows}),
        )
        known = {r["id"]: r["merchant_id"] for r in found}
    merchants = known
    accounts: dict[str, Account] = {}
    # Per (merchant, asset) pair, not per row: a block's rows share a few pairs.
    for merchant, asset in {(merchants[r["invoice_id"]], r["asset"]) for r in rows}:
        for a in [*platform_accounts(asset), *merchant_accounts(merchant, asset)]:
            accounts[a.id] = a
    await store.ensure_accounts(conn, sorted(accounts.values(), key=lambda a: a.id))
    return merchants


async def ensure_merchant(conn: asyncpg.Connection, merchant_id: str, asset: str) -> None:
    await store.ensure_accounts(conn, merchant_accounts(merchant_id, asset))


async def post_or_raise(conn: asyncpg.Connection, batch: list[Transfer], now: datetime) -> None:
    """Posts transfers the core itself derives; a refusal is a bug, never routine."""
    await _post(conn, batch, now)


async def _post(conn: asyncpg.Connection, batch: list[Transfer], now: datetime) -> None:
    if not batch:
        return
    outcome = await store.post(conn, batch, now)
    refused = [
        (t.id, r.reason, r.field) for t, r in zip(batch, outcome.results, strict=True) if not r.ok
    ]
    if refused:
        raise LedgerRefusedError(f"payment postings refused: {refused}")


def _pending(chain: str, r: asyncpg.Record, merchant: str, cycle: int) -> Transfer:
    return Transfer(
        id=transfer_id(chain, r, cycle, "pending"),
        debit_account_id=custody(r["asset"]),
        credit_account_id=merchant_account(merchant, r["asset"], "incoming"),
        amount=int(r["amount"]),
        asset=r["asset"],
        code=PAYMENT,
        flags=_PENDING,
        reference=names.invoice(merchant, r["invoice_id"]),
    )


def _reversal(chain: str, r: asyncpg.Record, merchant: str, cycle: int) -> Transfer:
    return Transfer(
        id=transfer_id(chain, r, cycle, "reversal"),
        debit_account_id=merchant_account(merchant, r["asset"], "incoming"),
        credit_account_id=custody(r["asset"]),
        amount=int(r["amount"]),
        asset=r["asset"],
        code=REVERSAL,
        reference=names.invoice(merchant, r["invoice_id"]),
    )


def _resolve(chain: str, r: asyncpg.Record, cycle: int, step: str) -> Transfer:
    flags = _POST if step == "post" else _VOID
    return Transfer(
        id=transfer_id(chain, r, cycle, step),
        flags=flags,
        pending_id=transfer_id(chain, r, cycle, "pending"),
    )


# Each takes the rows of apply.py's RETURNING: invoice_id, tx_hash,
# transfer_index, asset, amount, inclusions (the cycle now current).


async def detected(
    conn: asyncpg.Connection,
    chain: str,
    rows: Sequence[asyncpg.Record],
    now: datetime,
    merchants: Mapping[str, str] | None = None,
) -> None:
    """Included (first time or again): a pending credit to the merchant.

    `merchants` (invoice id -> merchant id) spares a read of the invoices when
    the caller holds their rows (the block applier locked them)."""
    if not rows:
        return
    merchants = await _merchants(conn, rows, merchants)
    await _post(
        conn,
        [_pending(chain, r, merchants[r["invoice_id"]], r["inclusions"]) for r in rows],
        now,
    )


async def confirmed(
    conn: asyncpg.Connection, chain: str, rows: Sequence[asyncpg.Record], now: datetime
) -> None:
    """Reached its confirmations: the cycle's pending transfer is posted."""
    await _post(conn, [_resolve(chain, r, r["inclusions"], "post") for r in rows], now)


async def _posted(conn: asyncpg.Connection, pending_ids: list[str]) -> set[str]:
    found = await conn.fetch(
        "SELECT pending_id FROM ledger_transfers WHERE pending_id = ANY($1::text[]) AND flags & 4 <> 0",
        pending_ids,
    )
    return {r["pending_id"] for r in found}


async def reorged(
    conn: asyncpg.Connection, chain: str, rows: Sequence[asyncpg.Record], now: datetime
) -> None:
    """Reorged out: void the cycle's pending transfer, or reverse it if posted."""
    if not rows:
        return
    merchants = await _merchants(conn, rows)
    posted = await _posted(conn, [transfer_id(chain, r, r["inclusions"], "pending") for r in rows])
    batch = []
    for r in rows:
        cycle = r["inclusions"]
        if transfer_id(chain, r, cycle, "pending") in posted:
            batch.append(_reversal(chain, r, merchants[r["invoice_id"]], cycle))
        else:
            batch.append(_resolve(chain, r, cycle, "void"))
    await _post(conn, batch, now)


async def unconfirmed(
    conn: asyncpg.Connection, chain: str, rows: Sequence[asyncpg.Record], now: datetime
) -> None:
    """Lost its confirmations: reverse the posted cycle and open the next (inclusions + 1)."""
    if not rows:
        return
    merchants = await _merchants(conn, rows)
    batch = []
    for r in rows:
        merchant, cycle = merchants[r["invoice_id"]], r["inclusions"]
        batch.append(_reversal(chain, r, merchant, cycle - 1))
        batch.append(_pending(chain, r, merchant, cycle))
    await _post(conn, batch, now)
