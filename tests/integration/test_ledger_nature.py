"""Accounts that must never go negative, against real PostgreSQL: Kassa's
merchant accounts carry the flag that refuses it, and `kassactl ledger check`
names a balance that breaks an account's nature even where no flag is set
(an account created before the flags, or by a tampered database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.ledger import accounts, store
from core.ledger.rules import Account, Reason, Transfer
from core.payouts import ledger as payout_ledger
from core.store.db import create_pool
from core.store.migrate import migrate
from tests.support.kassactl import ledger_check

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"


@pytest.mark.asyncio
async def test_refunds_payable_cannot_go_negative(fresh_dsn: str) -> None:
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        async with pool.acquire() as conn:
            await payout_ledger.ensure(conn, "m", ASSET, "eip155:1")
            payable = accounts.merchant_account("m", ASSET, "refunds_payable")
            outcome = await store.create_transfers(
                conn,
                [Transfer("t", payable, accounts.custody(ASSET), 5, ASSET, code=2)],
                datetime.now(UTC),
            )
            assert outcome.results[0].reason is Reason.EXCEEDS_CREDITS
            in_flight = accounts.in_flight("m", ASSET)
            outcome = await store.create_transfers(
                conn,
                [Transfer("u", in_flight, accounts.custody(ASSET), 5, ASSET, code=4)],
                datetime.now(UTC),
            )
            assert outcome.results[0].reason is Reason.EXCEEDS_CREDITS
    finally:
        await pool.close()
    assert ledger_check(fresh_dsn).returncode == 0


@pytest.mark.asyncio
async def test_ledger_check_names_a_balance_that_breaks_its_nature(fresh_dsn: str) -> None:
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    payable = accounts.merchant_account("m", ASSET, "refunds_payable")
    custody = accounts.custody(ASSET)
    try:
        async with pool.acquire() as conn:
            # As an account created before the flags existed: no flag, so nothing refuses.
            await store.create_accounts(
                conn,
                [Account(payable, ASSET, accounts.REFUNDS_PAYABLE), Account(custody, ASSET, 1001)],
            )
            await store.create_transfers(
                conn, [Transfer("in", custody, payable, 5, ASSET, code=1)], datetime.now(UTC)
            )
            assert ledger_check(fresh_dsn).returncode == 0
            # A refund debited more than the excess: refunds payable is negative.
            outcome = await store.create_transfers(
                conn, [Transfer("out", payable, custody, 8, ASSET, code=2)], datetime.now(UTC)
            )
            assert outcome.results[0].ok
    finally:
        await pool.close()
    broken = ledger_check(fresh_dsn)
    assert broken.returncode != 0
    assert f"account nature: account {payable}: balance -3" in broken.stderr, broken.stderr
