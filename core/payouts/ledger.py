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
  payout:{p}:sent       payouts_in_flight → platform:custody:{asset}:hot  (the hot key paid it)
  payout:{p}:fee        platform:network_fees:{native} → platform:custody:{native}:hot
                         (gas the hot key paid; the platform bears it)

Custody by location (sweeps, docs/payouts.md "Sweeps"); the three together
are what the platform holds:
  platform:custody:{asset}            code 1001  on deposit addresses (payments land here)
  platform:custody:{asset}:treasury   code 1004  swept to the chain's treasury
  platform:custody:{asset}:hot        code 1005  the hot key; negative while it spends a
                                                 float funded outside the ledger
Transfers (code 6 sweep, 7 gas funding, 5 network fee), reference sweeps/{s}:
  sweep:{s}:funded  custody:{native} (deposit) ← custody:{native}:hot   (gas funding landed)
  sweep:{s}:moved   custody:{asset}:treasury ← custody:{asset}          (sweep confirmed)
  sweep:{s}:fee     platform:network_fees:{native} ← the payer's location
                    (hot for a gas funding, the deposit address for a sweep)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from core.ledger import payments, store
from core.ledger.rules import Account, Transfer, TransferFlags

IN_FLIGHT = 2004
TREASURY, HOT = 1004, 1005
PAYOUT, NETWORK_FEE, SWEEP, GAS_FUNDING = 4, 5, 6, 7
SWEEP_KINDS = frozenset({"sweep", "gas_funding"})


def treasury(asset: str) -> str:
    return f"{payments.custody(asset)}:treasury"


def hot(asset: str) -> str:
    return f"{payments.custody(asset)}:hot"


def location_accounts(asset: str) -> list[Account]:
    return [Account(treasury(asset), asset, TREASURY), Account(hot(asset), asset, HOT)]


def in_flight(merchant_id: str, asset: str) -> str:
    return payments.merchant_account(merchant_id, asset, "payouts_in_flight")


def native_asset(chain: str) -> str:
    return f"{chain}/slip44:60"


async def ensure(conn: asyncpg.Connection, merchant_id: str, asset: str, chain: str) -> None:
    accounts = [
        *payments.platform_accounts(asset),
        *payments.merchant_accounts(merchant_id, asset),
        Account(in_flight(merchant_id, asset), asset, IN_FLIGHT),
        *location_accounts(asset),
    ]
    if native_asset(chain) != asset:
        accounts += payments.platform_accounts(native_asset(chain))
        accounts += location_accounts(native_asset(chain))
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
                credit_account_id=hot(row["asset"]),
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
            credit_account_id=hot(native),
            amount=fee_wei,
            asset=native,
            code=NETWORK_FEE,
            reference=_reference(row["merchant_id"], row["id"]),
        )
    ]


async def ensure_platform(conn: asyncpg.Connection, asset: str, chain: str) -> None:
    """The accounts a sweep or gas funding of `asset` on `chain` books to."""
    accounts = [*payments.platform_accounts(asset), *location_accounts(asset)]
    if native_asset(chain) != asset:
        accounts += payments.platform_accounts(native_asset(chain))
        accounts += location_accounts(native_asset(chain))
    await store.ensure_accounts(conn, sorted(accounts, key=lambda a: a.id))


def sweep_final(row: asyncpg.Record, landed: bool, fee_wei: int) -> list[Transfer]:
    """A sweep or gas funding reached a final state: the move if it landed and
    succeeded (`landed`), the gas whenever it was mined."""
    native = native_asset(row["chain"])
    reference = f"sweeps/{row['id']}"
    funding = row["kind"] == "gas_funding"
    batch: list[Transfer] = []
    if landed:
        asset = row["asset"]
        batch.append(
            Transfer(
                id=f"sweep:{row['id']}:funded" if funding else f"sweep:{row['id']}:moved",
                # Debit the location the funds arrive at, credit the one they left.
                debit_account_id=payments.custody(native) if funding else treasury(asset),
                credit_account_id=hot(native) if funding else payments.custody(asset),
                amount=int(row["amount"]),
                asset=native if funding else asset,
                code=GAS_FUNDING if funding else SWEEP,
                reference=reference,
            )
        )
    if fee_wei > 0:
        batch.append(
            Transfer(
                id=f"sweep:{row['id']}:fee",
                debit_account_id=f"platform:network_fees:{native}",
                # The hot key paid a funding's gas, the deposit address its sweep's.
                credit_account_id=hot(native) if funding else payments.custody(native),
                amount=fee_wei,
                asset=native,
                code=NETWORK_FEE,
                reference=reference,
            )
        )
    return batch


async def post(conn: asyncpg.Connection, batch: list[Transfer], now: datetime) -> None:
    await payments.post_or_raise(conn, batch, now)
