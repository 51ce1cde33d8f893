"""Accounts that must never go negative, against real PostgreSQL: Kassa's
merchant accounts carry the flag that refuses it, and `kassactl ledger check`
names a balance that breaks an account's nature even where no flag is set
(an account created before the flags, or by a tampered database)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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


@pytest.mark.asyncio
async def test_incoming_cannot_go_negative_and_the_receivable_cannot_go_the_other_way(
    fresh_dsn: str,
) -> None:
    """Issue 19: a reorg's settlement reversal refills incoming before the
    payment's reversal takes from it, so incoming carries the flag; what a
    merchant owes (the receivable) is never paid back beyond what is owed."""
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    incoming = accounts.merchant_account("m", ASSET, "incoming")
    receivable = accounts.receivable("m", ASSET)
    custody = accounts.custody(ASSET)
    try:
        async with pool.acquire() as conn:
            await payout_ledger.ensure(conn, "m", ASSET, "eip155:1")
            flags = dict(
                await conn.fetch(
                    "SELECT id, flags FROM ledger_accounts WHERE id = ANY($1::text[])",
                    [incoming, receivable],
                )
            )
            assert flags == {incoming: 1, receivable: 2}
            now = datetime.now(UTC)
            # A payment's reversal with nothing in incoming: refused.
            out = await store.create_transfers(
                conn, [Transfer("rev", incoming, custody, 5, ASSET, code=2)], now
            )
            assert out.results[0].reason is Reason.EXCEEDS_CREDITS
            # Paying back more than is owed: refused.
            out = await store.create_transfers(
                conn, [Transfer("in", custody, incoming, 5, ASSET, code=1)], now
            )
            assert out.results[0].ok
            out = await store.create_transfers(
                conn, [Transfer("back", incoming, receivable, 5, ASSET, code=3)], now
            )
            assert out.results[0].reason is Reason.EXCEEDS_DEBITS
            # Owed first, then paid back: accepted, in that order only.
            out = await store.create_transfers(
                conn,
                [
                    Transfer("owed", receivable, incoming, 3, ASSET, code=3),
                    Transfer("repaid", incoming, receivable, 3, ASSET, code=3),
                ],
                now,
            )
            assert all(r.ok for r in out.results)
    finally:
        await pool.close()
    assert ledger_check(fresh_dsn).returncode == 0


@pytest.mark.asyncio
async def test_migration_0013_flags_existing_incoming_accounts_that_satisfy_it(
    fresh_dsn: str,
) -> None:
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    good = accounts.merchant_account("a", ASSET, "incoming")
    broken = accounts.merchant_account("b", ASSET, "incoming")
    custody = accounts.custody(ASSET)
    sql = (
        Path(__file__).parents[2] / "core/store/migrations/0013_incoming_never_negative.sql"
    ).read_text()
    try:
        async with pool.acquire() as conn:
            # As accounts opened before the flag: none, one positive, one already negative.
            await store.create_accounts(
                conn,
                [
                    Account(good, ASSET, accounts.INCOMING),
                    Account(broken, ASSET, accounts.INCOMING),
                    Account(custody, ASSET, accounts.CUSTODY),
                ],
            )
            now = datetime.now(UTC)
            out = await store.create_transfers(
                conn,
                [
                    Transfer("in", custody, good, 5, ASSET, code=1),
                    Transfer("out", broken, custody, 2, ASSET, code=2),
                ],
                now,
            )
            assert all(r.ok for r in out.results)
            await conn.execute(sql)
            flags = dict(
                await conn.fetch(
                    "SELECT id, flags FROM ledger_accounts WHERE id = ANY($1::text[])",
                    [good, broken],
                )
            )
            assert flags == {good: 1, broken: 0}
    finally:
        await pool.close()
    broken_check = ledger_check(fresh_dsn)
    assert broken_check.returncode != 0
    assert f"account {broken}: balance -2" in broken_check.stderr, broken_check.stderr
