"""The posting trigger as the last line of defence, written to by hand: rows
that bypass the rules (one INSERT of many, or a COPY) move the totals exactly
as `kassactl ledger check` sums them, whatever their flags; an overdraft and
a resolution of a pending transfer that is not stored are refused, the whole
statement with them, however many good rows it carries."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from core.ledger import store
from core.ledger.rules import Account, Balances, Transfer, TransferFlags
from tests.support.ledger import migrated_pool
from tests.support.ledger_rows import ASSET, AT, DMNEC, TOTALS, copy, insert

Writer = Callable[[asyncpg.Connection, list[Transfer]], Awaitable[None]]


def raw_batch(
    rng: random.Random, prefix: str, accounts: list[str], pendings: list[Transfer]
) -> list[Transfer]:
    """Well-formed rows as the table's CHECKs allow them, not as the rules
    would: any flags (posts and voids of stored pendings, even several of one
    pending in one statement but for the unique resolution, and nonsense
    combinations like pending+post), any two of `accounts`."""
    out: list[Transfer] = []
    free = list(pendings)
    rng.shuffle(free)
    for i in range(rng.randint(1, 60)):
        debit, credit = rng.sample(accounts, 2)
        flags = rng.choice([0, 0, 0, 1, 2, 2, 3, 4, 8, 6, 12, 14])
        amount = rng.randint(1, 10**20)
        pending_id = None
        if flags & 12:
            if not free:
                flags = 0
            else:
                pending = free.pop()
                pending_id = pending.id
                debit, credit = pending.debit_account_id, pending.credit_account_id
                amount = rng.randint(1, pending.amount)
        out.append(
            Transfer(
                f"{prefix}{i}",
                debit,
                credit,
                amount,
                ASSET,
                code=rng.randint(0, 65535),
                flags=flags,
                pending_id=pending_id or "",
                timeout_s=rng.choice([0, 0, 60]) if flags & 2 else 0,
            )
        )
    return out


@pytest.mark.asyncio
async def test_hand_written_rows_move_the_totals_as_the_check_sums_them(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            for seed in range(16):
                rng = random.Random(seed)
                prefix = f"s{seed}:"
                accounts = [f"{prefix}acct{k}" for k in range(5)]
                await store.create_accounts(conn, [Account(a, ASSET) for a in accounts])
                pendings: list[Transfer] = []
                for round_ in range(4):
                    rows = raw_batch(rng, f"{prefix}{round_}:", accounts, pendings)
                    resolved = {t.pending_id for t in rows if t.pending_id}
                    pendings = [p for p in pendings if p.id not in resolved]
                    pendings += [t for t in rows if t.flags & TransferFlags.PENDING]
                    async with conn.transaction():
                        await (insert if rng.random() < 0.5 else copy)(conn, rows)
                    assert await conn.fetchrow(TOTALS.sql) is None, (seed, round_)
            moved = await store.get_accounts(conn, ["s0:acct0", "s0:acct1"])
            assert any(a.balances != Balances() for a in moved.values())
    finally:
        await pool.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("write", [insert, copy])
async def test_an_overdraft_written_by_hand_is_refused_with_its_whole_statement(
    fresh_dsn: str, write: Writer
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await store.create_accounts(
                conn, [Account("world", ASSET), Account("capped", ASSET, flags=DMNEC)]
            )
            await store.create_transfers(conn, [Transfer("fund", "world", "capped", 10)], AT)
            before = await store.get_accounts(conn, ["world", "capped"])
            good = [Transfer(f"g{i}", "world", "capped", 1, ASSET) for i in range(600)]
            # 10 + 600 in, 611 out: one more than the flag allows, at the end.
            bad = Transfer("overdraft", "capped", "world", 611, ASSET)
            for rows in ([bad], [*good, bad]):
                with pytest.raises(asyncpg.CheckViolationError, match="debits_must_not_exceed"):
                    async with conn.transaction():
                        await write(conn, rows)
            assert await store.get_accounts(conn, ["world", "capped"]) == before
            assert await conn.fetchval("SELECT count(*) FROM ledger_transfers") == 1
            # Without the overdraft, the same statement goes through.
            async with conn.transaction():
                await write(conn, good)
            after = await store.get_accounts(conn, ["capped"])
            assert after["capped"].balances.credits_posted == 610
    finally:
        await pool.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("write", [insert, copy])
@pytest.mark.parametrize("flags", [TransferFlags.POST_PENDING, TransferFlags.VOID_PENDING])
async def test_a_resolution_of_a_pending_transfer_not_stored_is_refused(
    fresh_dsn: str, write: Writer, flags: TransferFlags
) -> None:
    """The rules refuse it (PENDING_NOT_FOUND); written by hand, the trigger
    does, rather than leave the totals without the release."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await store.create_accounts(conn, [Account("a", ASSET), Account("b", ASSET)])
            await store.create_transfers(
                conn, [Transfer("p", "a", "b", 5, ASSET, flags=TransferFlags.PENDING)], AT
            )
            before = await store.get_accounts(conn, ["a", "b"])
            good = [Transfer(f"g{i}", "a", "b", 1, ASSET) for i in range(600)]
            ghost = Transfer("r", "a", "b", 5, ASSET, flags=flags, pending_id="nowhere")
            for rows in ([ghost], [*good, ghost], [ghost, *good]):
                with pytest.raises(asyncpg.ForeignKeyViolationError, match="nowhere"):
                    async with conn.transaction():
                        await write(conn, rows)
            assert await store.get_accounts(conn, ["a", "b"]) == before
            # Resolving the stored one is fine.
            async with conn.transaction():
                await write(
                    conn, [*good, Transfer("r", "a", "b", 5, ASSET, flags=flags, pending_id="p")]
                )
            after = await store.get_accounts(conn, ["a"])
            assert after["a"].balances.debits_pending == 0
            assert await conn.fetchrow(TOTALS.sql) is None
    finally:
        await pool.close()
