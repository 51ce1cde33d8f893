"""The ledger's keys compare byte by byte (migration 0026): the transfers'
id and account columns and the accounts' id are COLLATE "C", so every B-tree
insert of a batch compares with memcmp; and, since a key compared under one
collation can use only an index built under the same one, every lookup of
the ledger by key still finds its index (a half-done change would turn
them into sequential scans of the whole ledger)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.ledger import queries, statement, store
from core.ledger.rules import Account, Transfer, TransferFlags
from tests.support.ledger import migrated_pool

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEYS = {
    "ledger_transfers": ("id", "debit_account_id", "credit_account_id", "pending_id"),
    "ledger_accounts": ("id",),
}


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    rows = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return json.dumps(json.loads(rows) if isinstance(rows, str) else rows)


@pytest.mark.asyncio
async def test_the_ledgers_keys_are_bytewise_and_its_account_indexes_do_not_deduplicate(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            for table, columns in KEYS.items():
                for column in columns:
                    collation = await conn.fetchval(
                        """SELECT c.collname FROM pg_attribute a
                             JOIN pg_collation c ON c.oid = a.attcollation
                            WHERE a.attrelid = $1::regclass AND a.attname = $2""",
                        table,
                        column,
                    )
                    assert collation == "C", (table, column, collation)
            for index in ("ledger_transfers_by_debit", "ledger_transfers_by_credit"):
                options = await conn.fetchval(
                    "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", index
                )
                assert options == ["deduplicate_items=off"], (index, options)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_every_lookup_by_key_still_uses_its_index(fresh_dsn: str) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            accounts = [Account(f"acct{i:05d}", ASSET) for i in range(20_000)]
            await store.create_accounts(conn, accounts)
            batch = [
                Transfer(f"t{i}", f"acct{i % 500:05d}", f"acct{(i + 1) % 500:05d}", 5, ASSET, 1)
                for i in range(3_000)
            ]
            pendings = [
                Transfer(
                    f"p{i}",
                    "acct00001",
                    "acct00002",
                    1,
                    ASSET,
                    1,
                    flags=TransferFlags.PENDING,
                    timeout_s=60,
                )
                for i in range(10)
            ]
            await store.create_transfers(conn, [*batch, *pendings], AT)
            post = Transfer("post0", flags=TransferFlags.POST_PENDING, pending_id="p0")
            outcome = await store.create_transfers(conn, [post], AT)
            assert all(r.ok for r in outcome.results)
            await conn.execute("ANALYZE ledger_transfers, ledger_accounts")

            # The load: the batch's accounts (locked), its stored transfers and
            # their resolutions, and the pending ones' accounts.
            load = await _plan(conn, store._LOAD, ["acct00001", "acct00002"], ["t1", "p0"], ["p0"])
            assert "ledger_accounts_pkey" in load and "Seq Scan" not in load, load
            assert "ledger_transfers_pkey" in load, load
            assert "ledger_transfers_resolution" in load, load
            # An account's transfers, each side by its index.
            page = await _plan(
                conn,
                statement.ACCOUNT_TRANSFERS,
                "acct00003",
                0,
                AT - timedelta(days=1),
                AT + timedelta(days=1),
                10,
            )
            assert "ledger_transfers_by_debit" in page, page
            assert "ledger_transfers_by_credit" in page, page
            # A page of accounts by prefix and position: one range of the
            # primary key (before, a scan of every account, then a sort).
            accounts_page = await _plan(conn, queries.ACCOUNTS_PAGE, "acct01", "acct0100", 50)
            assert "ledger_accounts_pkey" in accounts_page, accounts_page
            assert "Seq Scan" not in accounts_page, accounts_page
            # An account by id, a transfer by id, a pending's resolution.
            for sql, args, index in (
                ("SELECT * FROM ledger_accounts WHERE id = $1", ("acct00007",), "accounts_pkey"),
                ("SELECT * FROM ledger_transfers WHERE id = $1", ("t7",), "transfers_pkey"),
                (
                    "SELECT * FROM ledger_transfers WHERE pending_id = $1",
                    ("p0",),
                    "transfers_resolution",
                ),
            ):
                plan = await _plan(conn, sql, *args)
                assert f"ledger_{index}" in plan and "Seq Scan" not in plan, (sql, plan)
    finally:
        await pool.close()
