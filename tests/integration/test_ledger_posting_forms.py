"""Migration 0031: the posting trigger's form for statements of plain
transfers only, and the account guard as a WHEN clause.

The plain form moves only posted totals; it must move them exactly as the
general form (and `kassactl ledger check`) sums them, at any size of amount,
and hand any statement with a pending, post or void to the general form. The
guard, now evaluated by the executor and calling its function only on a
violation, must refuse and allow exactly what the function did: totals change
only from inside a trigger, an account's identity never, a DELETE never.
And a big batch with nothing pending loads its accounts by a narrower
statement than the general load, with the same result and locks."""

from __future__ import annotations

import random

import asyncpg
import pytest

from core.ledger import store
from core.ledger.rules import TOTAL_MAX, Account, Balances, Transfer, TransferFlags
from tests.support.ledger import migrated_pool
from tests.support.ledger_rows import ASSET, AT, TOTALS, copy, insert


def expected(rows: list[Transfer], before: dict[str, Balances]) -> dict[str, Balances]:
    """Each account's totals after `rows`, all plain: amounts to posted."""
    out = dict(before)
    for t in rows:
        d, c = out[t.debit_account_id], out[t.credit_account_id]
        out[t.debit_account_id] = Balances(
            d.debits_pending, d.debits_posted + t.amount, d.credits_pending, d.credits_posted
        )
        out[t.credit_account_id] = Balances(
            c.debits_pending, c.debits_posted, c.credits_pending, c.credits_posted + t.amount
        )
    return out


@pytest.mark.asyncio
async def test_plain_statements_move_posted_totals_exactly(fresh_dsn: str) -> None:
    """Statements of plain transfers (flags 0 and linked) of any size, amounts
    up to 2**256 - 1, by INSERT and by COPY, between statements with pending
    transfers and their resolutions: every total as summed in Python and by
    the check; the plain ones leave pending totals alone."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            accounts = [f"acct{k}" for k in range(7)]
            await store.create_accounts(conn, [Account(a, ASSET) for a in accounts])
            rng = random.Random(31)
            totals = {a: Balances() for a in accounts}
            pendings: list[Transfer] = []
            for round_ in range(24):
                n = rng.choice([1, 2, 5, 40, 700])
                rows = []
                # No total can pass the highest so far plus every amount of the round.
                top = max(max(b.debits_posted, b.credits_posted) for b in totals.values())
                for i in range(n):
                    debit, credit = rng.sample(accounts, 2)
                    amount = rng.choice([1, rng.randint(1, 10**9), rng.randint(1, 2**256 - 1)])
                    if amount > 10**9 and top + amount > TOTAL_MAX:
                        amount = 1  # totals stay below numeric(78,0)'s limit
                    top += amount
                    flags = rng.choice([0, 0, 0, int(TransferFlags.LINKED)])
                    rows.append(Transfer(f"r{round_}:{i}", debit, credit, amount, ASSET, 1, flags))
                write = insert if round_ % 2 else copy
                async with conn.transaction():
                    await write(conn, rows)
                totals = expected(rows, totals)
                stored = await store.get_accounts(conn, accounts)
                assert {a: stored[a].balances for a in accounts} == totals, round_
                assert await conn.fetchrow(TOTALS.sql) is None, round_
                if round_ % 3 == 0:
                    # A statement with a pending transfer (and a post of an earlier
                    # one) among plain rows takes the general form: the check
                    # still finds every total the sum of the transfers.
                    debit, credit = rng.sample(accounts, 2)
                    mixed = [
                        Transfer(f"m{round_}:0", debit, credit, 3, ASSET, 1),
                        Transfer(f"p{round_}", debit, credit, 5, ASSET, 1, TransferFlags.PENDING),
                    ]
                    if pendings:
                        p = pendings.pop()
                        mixed.append(
                            Transfer(
                                f"post{round_}",
                                p.debit_account_id,
                                p.credit_account_id,
                                2,
                                ASSET,
                                1,
                                TransferFlags.POST_PENDING,
                                pending_id=p.id,
                            )
                        )
                    pendings.append(mixed[1])
                    async with conn.transaction():
                        await write(conn, mixed)
                    assert await conn.fetchrow(TOTALS.sql) is None, round_
                    stored = await store.get_accounts(conn, accounts)
                    totals = {a: stored[a].balances for a in accounts}
            assert any(b.debits_pending for b in totals.values())
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_the_guard_is_a_when_clause_and_a_delete_has_its_own_trigger(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT tgname, tgqual IS NOT NULL AS has_when,
                          (tgtype & 16) <> 0 AS on_update, (tgtype & 8) <> 0 AS on_delete
                     FROM pg_trigger
                    WHERE tgrelid = 'ledger_accounts'::regclass AND NOT tgisinternal
                      AND tgname IN ('ledger_accounts_guard', 'ledger_accounts_no_delete')
                    ORDER BY tgname"""
            )
            assert [tuple(r) for r in rows] == [
                ("ledger_accounts_guard", True, True, False),
                ("ledger_accounts_no_delete", False, False, True),
            ]
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_the_guard_refuses_and_allows_what_it_did(fresh_dsn: str) -> None:
    """Outside a trigger: totals and identity refused, a row rewritten as it is
    allowed. From inside another table's trigger (the posting trigger's
    depth): totals allowed, identity refused. A DELETE refused anywhere."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await store.create_accounts(conn, [Account("a", ASSET), Account("b", ASSET)])
            await store.create_transfers(conn, [Transfer("t", "a", "b", 5, ASSET)], AT)
            for sql in [
                "UPDATE ledger_accounts SET debits_posted = debits_posted + 1 WHERE id = 'a'",
                "UPDATE ledger_accounts SET credits_pending = 1 WHERE id = 'b'",
                "UPDATE ledger_accounts SET user_data = 'x' WHERE id = 'a'",
                "UPDATE ledger_accounts SET flags = 1 WHERE id = 'b'",
                "DELETE FROM ledger_accounts WHERE id = 'a'",
            ]:
                with pytest.raises(asyncpg.RaiseError):
                    await conn.execute(sql)
            # Nothing changed but the update time: no rule broken.
            await conn.execute("UPDATE ledger_accounts SET update_time = now() WHERE id = 'a'")
            await conn.execute(
                """CREATE TABLE nudges (id text, identity boolean, remove boolean);
                   CREATE FUNCTION nudge() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN
                       IF NEW.remove THEN
                           DELETE FROM ledger_accounts WHERE id = NEW.id;
                       ELSIF NEW.identity THEN
                           UPDATE ledger_accounts SET asset = 'other' WHERE id = NEW.id;
                       ELSE
                           UPDATE ledger_accounts SET debits_posted = debits_posted + 1
                            WHERE id = NEW.id;
                       END IF;
                       RETURN NULL;
                   END $$;
                   CREATE TRIGGER nudge AFTER INSERT ON nudges
                       FOR EACH ROW EXECUTE FUNCTION nudge();"""
            )
            await conn.execute("INSERT INTO nudges VALUES ('a', false, false)")
            moved = await store.get_accounts(conn, ["a"])
            assert moved["a"].balances.debits_posted == 6
            for identity, remove in ((True, False), (False, True)):
                with pytest.raises(asyncpg.RaiseError):
                    await conn.execute("INSERT INTO nudges VALUES ('a', $1, $2)", identity, remove)
            assert (await store.get_accounts(conn, ["a"]))["a"] == moved["a"]
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_load_without_transfers_reads_the_accounts_alone_by_their_index(
    fresh_dsn: str,
) -> None:
    """A big batch with nothing pending to resolve loads its accounts by the
    narrow statement: the same accounts and totals (past 2**64 too) as the
    general load, locked, through the primary key of a ledger of 20,000."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            accounts = [Account(f"acct{i:05d}", ASSET) for i in range(20_000)]
            await store.create_accounts(conn, accounts)
            big = 2**200 + 7
            await store.create_transfers(
                conn,
                [
                    Transfer("t0", "acct00001", "acct00002", big, ASSET),
                    Transfer("p0", "acct00002", "acct00003", 9, ASSET, flags=TransferFlags.PENDING),
                ],
                AT,
            )
            await conn.execute("ANALYZE ledger_accounts")
            ids = ["acct00003", "acct00001", "acct00002", "acct19999", "nowhere"]
            wanted = sorted(ids)
            async with conn.transaction():
                loaded, stored = await store._load(conn, wanted, [], [])
                locked = await conn.fetchval(
                    """SELECT count(*) FROM ledger_accounts
                        WHERE id = ANY($1::text[]) AND xmax = txid_current()::text::xid""",
                    wanted,
                )
            assert stored == {}
            assert locked == 4
            rows = await conn.fetch(store._LOAD, wanted, [], [])
            assert loaded == {r["id"]: store.account_of(r) for r in rows}
            assert loaded["acct00001"].balances == Balances(debits_posted=big)
            assert loaded["acct00002"].balances == Balances(debits_pending=9, credits_posted=big)
            plan = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) {store._LOAD_ACCOUNTS}", ["acct00001", "acct00002"]
            )
            plan = str(plan)
            assert "ledger_accounts_pkey" in plan and "Seq Scan" not in plan, plan
    finally:
        await pool.close()
