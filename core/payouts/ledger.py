"""Payouts in the ledger: a hold before anything is signed, posted when the
transaction confirms, voided when the payout fails or is cancelled.

Accounts (beside core/ledger/payments.py's chart):
  merchant:{m}:{asset}:payouts_in_flight  code 2004  held for payouts being sent

Transfers (code 4 payout, 5 network fee), reference merchants/{m}/payouts/{p}:
  payout:{p}:hold:{n}   pending  merchant source n → payouts_in_flight
                         (source: available; for refunds refunds_payable,
                         incoming and/or available — see docs/payouts.md)
  payout:{p}:post:{n}   posts hold n              (confirmed)
  payout:{p}:void:{n}   voids hold n              (failed, cancelled)
  payout:{p}:sent       payouts_in_flight → platform:custody:{asset}  (the funds left custody)
  payout:{p}:fee        platform:network_fees:{native} → platform:custody:{native}
                         (gas the hot key paid; the platform bears it)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from core.ledger import payments, store
from core.ledger.rules import Account, Transfer, TransferFlags

IN_FLIGHT = 2004
PAYOUT, NETWORK_FEE = 4, 5


def in_flight(merchant_id: str, asset: str) -> str:
    return payments.merchant_account(merchant_id, asset, "payouts_in_flight")


def native_asset(chain: str) -> str:
    return f"{chain}/slip44:60"


async def ensure(conn: asyncpg.Connection, merchant_id: str, asset: str, chain: str) -> None:
    accounts = [
        *payments.platform_accounts(asset),
        *payments.merchant_accounts(merchant_id, asset),
        Account(in_flight(merchant_id, asset), asset, IN_FLIGHT),
    ]
    if native_asset(chain) != asset:
        accounts += payments.platform_accounts(native_asset(chain))
    await store.ensure_accounts(conn, sorted(accounts, key=lambda a: a.id))


async def spendable(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, int]:
    """Credits not yet debited or held, with the accounts locked (id order) until commit."""
    rows = await conn.fetch(
        """SELECT id, credits_posted - debits_posted - debits_pending AS free
             FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE""",
        sorted(set(account_ids)),
    )
    return {r["id"]: int(r["free"]) for r in rows}


def _reference(merchant_id: str, payout_id: str) -> str:
    return f"merchants/{merchant_id}/payouts/{payout_id}"


def holds(row: asyncpg.Record) -> list[Transfer]:
    m, asset = row["merchant_id"], row["asset"]
    return [
        Transfer(
            id=f"payout:{row['id']}:hold:{n}",
            debit_account_id=payments.merchant_account(m, asset, source),
            credit_account_id=in_flight(m, asset),
            amount=int(amount),
            asset=asset,
            code=PAYOUT,
            flags=TransferFlags.PENDING,
            reference=_reference(m, row["id"]),
        )
        for n, (source, amount) in enumerate(
            zip(row["hold_sources"], row["hold_amounts"], strict=True)
        )
    ]


def release(row: asyncpg.Record, post: bool) -> list[Transfer]:
    step, flag = (
        ("post", TransferFlags.POST_PENDING) if post else ("void", TransferFlags.VOID_PENDING)
    )
    batch = [
        Transfer(
            id=f"payout:{row['id']}:{step}:{n}",
            flags=flag,
            pending_id=f"payout:{row['id']}:hold:{n}",
        )
        for n in range(len(row["hold_sources"]))
    ]
    if post:
        batch.append(
            Transfer(
                id=f"payout:{row['id']}:sent",
                debit_account_id=in_flight(row["merchant_id"], row["asset"]),
                credit_account_id=payments.custody(row["asset"]),
                amount=int(row["amount"]),
                asset=row["asset"],
                code=PAYOUT,
                reference=_reference(row["merchant_id"], row["id"]),
            )
        )
    return batch


def network_fee(row: asyncpg.Record, fee_wei: int) -> list[Transfer]:
    if fee_wei <= 0:
        return []
    native = native_asset(row["chain"])
    return [
        Transfer(
            id=f"payout:{row['id']}:fee",
            debit_account_id=f"platform:network_fees:{native}",
            credit_account_id=payments.custody(native),
            amount=fee_wei,
            asset=native,
            code=NETWORK_FEE,
            reference=_reference(row["merchant_id"], row["id"]),
        )
    ]


async def post(conn: asyncpg.Connection, batch: list[Transfer], now: datetime) -> None:
    await payments.post_or_raise(conn, batch, now)
