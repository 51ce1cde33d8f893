"""The ledger store against real PostgreSQL: 16 concurrent writers on hot
accounts, then `kassactl ledger check`; the database's own guards; and the
check naming a corruption."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime

import asyncpg
import pytest

from core.ledger import store
from core.ledger.rules import Account, AccountFlags, Balances, Transfer, TransferFlags, effects
from core.store.db import create_pool
from core.store.migrate import migrate
from tests.support.kassactl import ledger_check

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"
WRITERS = 16
PER_WRITER = 2000
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


def now() -> datetime:
    return datetime.now(UTC)


async def writer(
    pool: asyncpg.Pool,
    n: int,
    accepted: list[tuple[Transfer, int]],
    refused: list[str],
    sizes: tuple[int, int] = (1, 40),
) -> None:
    rng = random.Random(n)
    me, shared = f"w{n:02}", [f"shared{k}" for k in range(4)]
    open_pendings: list[str] = []
    amounts: dict[str, int] = {}
    sent = 0
    async with pool.acquire() as conn:  # one connection per writer, held throughout
        while sent < PER_WRITER:
            batch: list[Transfer] = []
            for _ in range(rng.randint(*sizes)):
                tid = f"{me}-{sent}"
                sent += 1
                roll = rng.random()
                if roll < 0.25:
                    batch.append(Transfer(tid, "world", "hot", rng.randint(1, 100)))
                elif roll < 0.45:
                    batch.append(Transfer(tid, "world", me, rng.randint(1, 100)))
                elif roll < 0.6:
                    # May exceed what `me` holds: refused by its flag, never lost.
                    batch.append(Transfer(tid, me, rng.choice(shared), rng.randint(1, 150)))
                elif roll < 0.7:
                    batch.append(Transfer(tid, rng.choice(shared), "hot", rng.randint(1, 50)))
                elif roll < 0.8:
                    amount = rng.randint(1, 100)
                    batch.append(Transfer(tid, me, "hot", amount, flags=TransferFlags.PENDING))
                    open_pendings.append(tid)
                    amounts[tid] = amount
                elif open_pendings:
                    pending = open_pendings.pop(rng.randrange(len(open_pendings)))
                    if rng.random() < 0.5:
                        post = rng.randint(0, amounts[pending])
                        flags = TransferFlags.POST_PENDING
                    else:
                        post, flags = 0, TransferFlags.VOID_PENDING
                    batch.append(Transfer(tid, flags=flags, pending_id=pending, amount=post))
                else:
                    batch.append(
                        Transfer(tid, "world", "hot", 1, flags=TransferFlags.LINKED)
                        if rng.random() < 0.5 and sent < PER_WRITER
                        else Transfer(tid, "hot", rng.choice(shared), 1)
                    )
            if batch[-1].flags & TransferFlags.LINKED:
                batch[-1] = Transfer(batch[-1].id, "world", "hot", 1)
            outcome = await store.create_transfers(conn, batch, now())
            refused += [r.reason or "" for r in outcome.results if not r.ok]
            for t in outcome.writes:
                pending_amount = amounts.get(t.pending_id, 0)
                accepted.append((t, pending_amount))


@pytest.mark.asyncio
async def test_16_concurrent_writers_on_hot_accounts_lose_nothing(fresh_dsn: str) -> None:
    await concurrent_writers_lose_nothing(fresh_dsn, WRITERS, (1, 40))


@pytest.mark.asyncio
async def test_concurrent_big_batches_streamed_while_decided_lose_nothing(fresh_dsn: str) -> None:
    """Batches past store.DECIDE_INLINE_MAX go through the streamed COPY."""
    assert store.DECIDE_INLINE_MAX < 300
    await concurrent_writers_lose_nothing(fresh_dsn, 4, (300, 800))


async def concurrent_writers_lose_nothing(dsn: str, writers: int, sizes: tuple[int, int]) -> None:
    await migrate(dsn)
    pool = await create_pool(dsn, max_size=writers + 1, min_size=writers)
    try:
        async with pool.acquire() as conn:
            names = ["world", "hot", *(f"shared{k}" for k in range(4))]
            names += [f"w{n:02}" for n in range(writers)]
            flags = {"world": 0, "hot": 0}
            results = await store.create_accounts(
                conn, [Account(n, ASSET, code=1, flags=flags.get(n, DMNEC)) for n in names]
            )
            assert all(r.ok and not r.existed for r in results)
        accepted: list[tuple[Transfer, int]] = []
        refused: list[str] = []
        await asyncio.gather(*(writer(pool, n, accepted, refused, sizes) for n in range(writers)))
        # Every accepted transfer, as the writers were told, sums to the stored totals.
        expected: dict[str, Balances] = defaultdict(Balances)
        for t, pending_amount in accepted:
            debit, credit = effects(t, pending_amount)
            expected[t.debit_account_id] += debit
            expected[t.credit_account_id] += credit
        async with pool.acquire() as conn:
            stored = await store.get_accounts(conn, names)
            count = await conn.fetchval("SELECT count(*) FROM ledger_transfers")
        assert {n: a.balances for n, a in stored.items() if a.balances != Balances()} == dict(
            expected
        )
        assert count == len(accepted) > writers * PER_WRITER // 2
        assert "EXCEEDS_CREDITS" in refused  # the flags were exercised
    finally:
        await pool.close()
    checked = ledger_check(dsn)
    assert checked.returncode == 0, checked.stderr
    assert "ledger check: ok" in checked.stdout


async def two_accounts_and_a_transfer(conn: asyncpg.Connection) -> None:
    await store.create_accounts(conn, [Account("a", ASSET), Account("b", ASSET)])
    await store.create_transfers(conn, [Transfer("t", "a", "b", 5)], now())


@pytest.mark.asyncio
async def test_the_database_refuses_to_rewrite_history(fresh_dsn: str) -> None:
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        async with pool.acquire() as conn:
            await two_accounts_and_a_transfer(conn)
            for sql in [
                "UPDATE ledger_transfers SET amount = 6",
                "DELETE FROM ledger_transfers",
                "TRUNCATE ledger_transfers",
                "UPDATE ledger_accounts SET credits_posted = 0",
                "UPDATE ledger_accounts SET asset = 'x'",
                "DELETE FROM ledger_accounts",
            ]:
                with pytest.raises(asyncpg.RaiseError):
                    await conn.execute(sql)
            # A pending transfer is resolved at most once, whatever the rules say.
            await store.create_transfers(
                conn, [Transfer("p", "a", "b", 5, flags=TransferFlags.PENDING)], now()
            )
            await store.write(
                conn, [Transfer("v1", "a", "b", 5, ASSET, flags=8, pending_id="p")], now()
            )
            with pytest.raises(asyncpg.UniqueViolationError):
                await store.write(
                    conn, [Transfer("v2", "a", "b", 5, ASSET, flags=8, pending_id="p")], now()
                )
    finally:
        await pool.close()
    assert ledger_check(fresh_dsn).returncode == 0


@pytest.mark.asyncio
async def test_ledger_check_names_a_corrupted_total(fresh_dsn: str) -> None:
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        async with pool.acquire() as conn:
            await two_accounts_and_a_transfer(conn)
            assert ledger_check(fresh_dsn).returncode == 0
            await conn.execute("ALTER TABLE ledger_accounts DISABLE TRIGGER ledger_accounts_guard")
            await conn.execute("UPDATE ledger_accounts SET credits_posted = 7 WHERE id = 'b'")
            broken = ledger_check(fresh_dsn)
            assert broken.returncode != 0
            assert "asset balance" in broken.stderr and "posted credits 7" in broken.stderr
            # Balanced again, but no longer the sum of the transfers.
            await conn.execute("UPDATE ledger_accounts SET debits_posted = 7 WHERE id = 'a'")
            broken = ledger_check(fresh_dsn)
            assert broken.returncode != 0 and "account totals: account a" in broken.stderr
            await conn.execute(
                """UPDATE ledger_accounts SET debits_posted = CASE id WHEN 'a' THEN 5 ELSE 0 END,
                                              credits_posted = CASE id WHEN 'b' THEN 5 ELSE 0 END"""
            )
            # Sound totals, but the guard is still off: named too.
            broken = ledger_check(fresh_dsn)
            assert broken.returncode != 0 and "ledger_accounts_guard" in broken.stderr
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_streamed_batch_stores_what_the_insert_stores(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same 300 transfers (pendings with and without timeouts, posts of
    them in the same batch, text COPY must escape) through the streamed COPY
    and through the INSERT: the same rows, the same change of totals."""
    texts = ["", "tab\there", "new\nline", "back\\slash", "\\N", "\\.", "cr\r", "é€", 'a,"b"']
    printable = ["", "back\\slash", "\\N", "\\.", "é€", 'a,"b"']

    def batch(prefix: str) -> list[Transfer]:
        out: list[Transfer] = []
        for i in range(300):
            tid = f"{prefix}{i}{printable[i % len(printable)]}"
            text = texts[i % len(texts)]
            if i % 3 == 0:
                timeout_s = 3600 if i % 2 else 0
                out.append(
                    Transfer(
                        tid,
                        "a",
                        "b",
                        i + 1,
                        flags=TransferFlags.PENDING,
                        timeout_s=timeout_s,
                        reference=text,
                        user_data=text[::-1],
                    )
                )
            elif i % 3 == 1:
                out.append(Transfer(tid, "b", "a", i, code=7, reference=text))
            else:  # posts the pending two before it, in full
                out.append(Transfer(tid, flags=TransferFlags.POST_PENDING, pending_id=out[-2].id))
        return out

    select = """SELECT debit_account_id, credit_account_id, amount, asset, code, flags, timeout_s,
                       reference, user_data, create_time, expire_time,
                       substr(pending_id, 2) AS pending, substr(id, 2) AS id
                  FROM ledger_transfers WHERE id LIKE $1 ORDER BY seq"""
    at = now()
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        async with pool.acquire() as conn:
            await store.create_accounts(conn, [Account("a", ASSET), Account("b", ASSET)])
            totals = [await store.get_accounts(conn, ["a", "b"])]
            streamed = await store.create_transfers(conn, batch("S"), at)
            totals.append(await store.get_accounts(conn, ["a", "b"]))
            monkeypatch.setattr(store, "DECIDE_INLINE_MAX", 10_000)
            inserted = await store.create_transfers(conn, batch("I"), at)
            totals.append(await store.get_accounts(conn, ["a", "b"]))
            rows = {
                p: [
                    dict(r)
                    for r in await conn.fetch(
                        select,
                        f"{p}%",
                    )
                ]
                for p in "SI"
            }
    finally:
        await pool.close()
    assert all(r.ok for r in streamed.results) and streamed.results == inserted.results
    assert len(rows["S"]) == 300 and rows["S"] == rows["I"]
    assert rows["S"][1]["reference"] == "tab\there" and rows["S"][2]["id"] == "2\\N"
    assert rows["S"][0]["expire_time"] is None and rows["S"][3]["expire_time"] is not None

    def moved(k: int, account: str) -> Balances:
        before, after = totals[k][account].balances, totals[k + 1][account].balances
        return Balances(
            after.debits_pending - before.debits_pending,
            after.debits_posted - before.debits_posted,
            after.credits_pending - before.credits_pending,
            after.credits_posted - before.credits_posted,
        )

    assert moved(0, "a") == moved(1, "a") != Balances()
    assert moved(0, "b") == moved(1, "b") != Balances()
    assert ledger_check(fresh_dsn).returncode == 0


@pytest.mark.asyncio
async def test_the_same_big_batch_twice_at_once_posts_once(fresh_dsn: str) -> None:
    """Two streamed COPYs of the same ids race: the loser's COPY fails on the
    primary key, its transaction is retried and sees every transfer stored."""
    await migrate(fresh_dsn)
    pool = await create_pool(fresh_dsn, max_size=3, min_size=2)
    batch = [Transfer(f"t{i}", "a", "b", i + 1) for i in range(400)]
    try:
        async with pool.acquire() as conn:
            await store.create_accounts(conn, [Account("a", ASSET), Account("b", ASSET)])

        async def post() -> list[bool]:
            async with pool.acquire() as conn:
                outcome = await store.create_transfers(conn, batch, now())
            assert all(r.ok for r in outcome.results)
            return [r.existed for r in outcome.results]

        first, second = await asyncio.gather(post(), post())
        async with pool.acquire() as conn:
            totals = await store.get_accounts(conn, ["b"])
            count = await conn.fetchval("SELECT count(*) FROM ledger_transfers")
    finally:
        await pool.close()
    # One of them stored all 400, the other replayed them (or, if they did
    # not overlap, found them stored): never both, never some of each.
    assert sorted([first, second]) == [[False] * 400, [True] * 400]
    assert count == 400
    assert int(totals["b"].balances.credits_posted) == sum(range(1, 401))
    assert ledger_check(fresh_dsn).returncode == 0
