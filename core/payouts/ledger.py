"""Payouts in the ledger: a hold before anything is signed, posted when the
transaction confirms, voided when the payout fails or is cancelled.

Accounts: core/ledger/accounts.py (payouts_in_flight, the custody locations).

Transfers (code 4 payout, 5 network fee, 8 a landing undone by a reorg), reference merchants/{m}/payouts/{p}:
  payout:{p}:hold:{n}   pending  merchant source n → payouts_in_flight
                         (source: available; for refunds refunds_payable,
                         incoming and/or available — see docs/payouts.md)
  payout:{p}:post:{n}   posts hold n              (confirmed)
  payout:{p}:void:{n}   voids hold n              (failed, cancelled)
  payout:{p}:sent       payouts_in_flight → platform:custody:{asset}:hot  (the hot key paid it)
  payout:{p}:fee        platform:network_fees:{native} → platform:custody:{native}:hot
                         (gas the hot key paid; the platform bears it)

A landing is final only past the chain's finality depth. A reorg that removes
it reverses what that landing booked (`undo`: each transfer mirrored, id
`{id}:undone`; a voided hold is taken again, posted, as payout:{p}:retake:{n});
the next landing, number k, books `landing(…, k)`: payout:{p}:sent:{k} (or
payout:{p}:return:{k}:{n} back to the sources) and payout:{p}:fee:{k}. The
hold itself is resolved once; after a reorg the funds wait in payouts_in_flight
as posted credits.

A nonce fill (kind nonce_fill, reference sweeps/{f} like every platform row)
moves nothing: its only booking is the gas the hot key paid, as any payout's,
payout:{f}:fee (numbered after a reorg like a payout's landings).

Custody by location (sweeps, docs/payouts.md "Sweeps"): deposit addresses,
treasury and hot key (core/ledger/accounts.py); the three together are what
the platform holds.
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

from core.domain import assets
from core.ledger import accounts, payments, store
from core.ledger.accounts import custody, hot, in_flight, location_accounts, treasury
from core.ledger.rules import Account, Transfer, TransferFlags

PAYOUT, NETWORK_FEE, SWEEP, GAS_FUNDING, REORGED = 4, 5, 6, 7, 8
SWEEP_KINDS = frozenset({"sweep", "gas_funding"})
NONCE_FILL = "nonce_fill"
# Rows of the platform: no merchant, no hold to take or release.
PLATFORM_KINDS = SWEEP_KINDS | {NONCE_FILL}


async def ensure(conn: asyncpg.Connection, merchant_id: str, asset: str, chain: str) -> None:
    wanted = [
        *accounts.platform_accounts(asset),
        *accounts.merchant_accounts(merchant_id, asset),
        # Held for the merchant: never more out than in.
        Account(in_flight(merchant_id, asset), asset, accounts.IN_FLIGHT, accounts.NEVER_NEGATIVE),
        *location_accounts(asset),
    ]
    if assets.native(chain) != asset:
        wanted += accounts.platform_accounts(assets.native(chain))
        wanted += location_accounts(assets.native(chain))
    await store.ensure_accounts(conn, sorted(wanted, key=lambda a: a.id))


async def spendable(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, int]:
    """Credits not yet debited or held, with the accounts locked (id order) until commit."""
    rows = await conn.fetch(
        """SELECT id, credits_posted - debits_posted - debits_pending AS free
             FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE""",
        sorted(set(account_ids)),
    )
    return {r["id"]: int(r["free"]) for r in rows}


def _reference(merchant_id: str | None, payout_id: str) -> str:
    if merchant_id is None:
        return f"sweeps/{payout_id}"  # a platform row's name (core/reconcile reads it so)
    return f"merchants/{merchant_id}/payouts/{payout_id}"


def holds(row: asyncpg.Record) -> list[Transfer]:
    m, asset = row["merchant_id"], row["asset"]
    return [
        Transfer(
            id=f"payout:{row['id']}:hold:{n}",
            debit_account_id=accounts.merchant_account(m, asset, source),
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


def _cycle(transfer_id: str, cycle: int) -> str:
    """The id of a transfer of landing number `cycle` (0: the first, unnumbered)."""
    return transfer_id if cycle == 0 else f"{transfer_id}:{cycle}"


def network_fee(row: asyncpg.Record, fee_wei: int, cycle: int = 0) -> list[Transfer]:
    if fee_wei <= 0:
        return []
    native = assets.native(row["chain"])
    return [
        Transfer(
            id=_cycle(f"payout:{row['id']}:fee", cycle),
            debit_account_id=accounts.network_fees(native),
            credit_account_id=hot(native),
            amount=fee_wei,
            asset=native,
            code=NETWORK_FEE,
            reference=_reference(row["merchant_id"], row["id"]),
        )
    ]


async def ensure_platform(conn: asyncpg.Connection, asset: str, chain: str) -> None:
    """The accounts a sweep or gas funding of `asset` on `chain` books to."""
    wanted = [*accounts.platform_accounts(asset), *location_accounts(asset)]
    if assets.native(chain) != asset:
        wanted += accounts.platform_accounts(assets.native(chain))
        wanted += location_accounts(assets.native(chain))
    await store.ensure_accounts(conn, sorted(wanted, key=lambda a: a.id))


def sweep_final(row: asyncpg.Record, landed: bool, fee_wei: int, cycle: int = 0) -> list[Transfer]:
    """A sweep or gas funding reached a final state: the move if it landed and
    succeeded (`landed`), the gas whenever it was mined."""
    native = assets.native(row["chain"])
    reference = f"sweeps/{row['id']}"
    funding = row["kind"] == "gas_funding"
    batch: list[Transfer] = []
    if landed:
        asset = row["asset"]
        batch.append(
            Transfer(
                id=_cycle(f"sweep:{row['id']}:{'funded' if funding else 'moved'}", cycle),
                # Debit the location the funds arrive at, credit the one they left.
                debit_account_id=custody(native) if funding else treasury(asset),
                credit_account_id=hot(native) if funding else custody(asset),
                amount=int(row["amount"]),
                asset=native if funding else asset,
                code=GAS_FUNDING if funding else SWEEP,
                reference=reference,
            )
        )
    if fee_wei > 0:
        batch.append(
            Transfer(
                id=_cycle(f"sweep:{row['id']}:fee", cycle),
                debit_account_id=accounts.network_fees(native),
                # The hot key paid a funding's gas, the deposit address its sweep's.
                credit_account_id=hot(native) if funding else custody(native),
                amount=fee_wei,
                asset=native,
                code=NETWORK_FEE,
                reference=reference,
            )
        )
    return batch


def _sources(row: asyncpg.Record) -> list[tuple[int, str, int]]:
    return [
        (n, accounts.merchant_account(row["merchant_id"], row["asset"], source), int(amount))
        for n, (source, amount) in enumerate(
            zip(row["hold_sources"], row["hold_amounts"], strict=True)
        )
    ]


def landing(row: asyncpg.Record, succeeded: bool, fee_wei: int, cycle: int) -> list[Transfer]:
    """The posted transfers that book landing number `cycle` (the hold's own
    post or void, for the first, comes from `release`)."""
    if row["kind"] in SWEEP_KINDS:
        return sweep_final(row, succeeded, fee_wei, cycle)
    if row["kind"] == NONCE_FILL:
        return network_fee(row, fee_wei, cycle)
    m, asset, reference = (
        row["merchant_id"],
        row["asset"],
        _reference(row["merchant_id"], row["id"]),
    )
    batch: list[Transfer] = []
    if succeeded:
        batch.append(
            Transfer(
                id=_cycle(f"payout:{row['id']}:sent", cycle),
                debit_account_id=in_flight(m, asset),
                credit_account_id=hot(asset),
                amount=int(row["amount"]),
                asset=asset,
                code=PAYOUT,
                reference=reference,
            )
        )
    elif cycle > 0:
        # Reverted after a reorg: the funds go back where the hold took them from.
        batch += [
            Transfer(
                id=f"payout:{row['id']}:return:{cycle}:{n}",
                debit_account_id=in_flight(m, asset),
                credit_account_id=source,
                amount=amount,
                asset=asset,
                code=PAYOUT,
                reference=reference,
            )
            for n, source, amount in _sources(row)
        ]
    return batch + network_fee(row, fee_wei, cycle)


def undo(row: asyncpg.Record, succeeded: bool, fee_wei: int, cycle: int) -> list[Transfer]:
    """Reverses landing number `cycle`, which a reorg removed from the chain."""
    batch = [
        Transfer(
            id=f"{t.id}:undone",
            debit_account_id=t.credit_account_id,
            credit_account_id=t.debit_account_id,
            amount=t.amount,
            asset=t.asset,
            code=REORGED,
            reference=t.reference,
        )
        for t in landing(row, succeeded, fee_wei, cycle)
    ]
    if not succeeded and cycle == 0 and row["kind"] not in PLATFORM_KINDS:
        # The hold was voided: the funds are taken again, posted, while it is resent.
        reference = _reference(row["merchant_id"], row["id"])
        batch += [
            Transfer(
                id=f"payout:{row['id']}:retake:{n}",
                debit_account_id=source,
                credit_account_id=in_flight(row["merchant_id"], row["asset"]),
                amount=amount,
                asset=row["asset"],
                code=PAYOUT,
                reference=reference,
            )
            for n, source, amount in _sources(row)
        ]
    return batch


async def post(conn: asyncpg.Connection, batch: list[Transfer], now: datetime) -> None:
    await payments.post_or_raise(conn, batch, now)
