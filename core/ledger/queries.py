"""The ledger's reads for LedgerService: an account, a page of accounts, a
page of an account's transfers, its statement. Posting goes through core/ledger/batcher.py and store.py.

An unknown account is a Refusal in the ledger's error domain; the edge maps
it to NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from core.errors import Code, Refusal
from core.errors import invalid as _invalid
from core.ledger import statement, store
from core.ledger.rules import Account, Result

DOMAIN = "kassa.ledger"


def invalid(violations: list[tuple[str, str]]) -> Refusal:
    """Bad input to LedgerService, in the ledger's error domain."""
    return _invalid(violations, domain=DOMAIN)


def account_not_found(account_id: str) -> Refusal:
    return Refusal(
        Code.NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
        f"ledger account {account_id} not found",
        metadata={"account_id": account_id},
        domain=DOMAIN,
    )


async def account(pool: asyncpg.Pool, account_id: str) -> tuple[Account, datetime]:
    """The account and its create time; ACCOUNT_NOT_FOUND if there is none."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM ledger_accounts WHERE id = $1", account_id)
    if row is None:
        raise account_not_found(account_id)
    return store.account_of(row), row["create_time"]


ACCOUNTS_PAGE = """
SELECT * FROM ledger_accounts
 WHERE starts_with(id, $1) AND id COLLATE "C" > $2
 ORDER BY id COLLATE "C" LIMIT $3
"""


async def accounts_page(
    pool: asyncpg.Pool, id_prefix: str, after_id: str, limit: int
) -> list[tuple[Account, datetime]]:
    """Up to `limit` accounts whose id starts with `id_prefix`, after `after_id`.

    Bytewise ("C") order, not the database's collation: a locale that ignores
    punctuation would interleave "merchant:a:…" with "merchant:ab…" and make
    positions unstable. The primary key is bytewise too (migration 0026), so
    the prefix and the position are one range of its index: 50,000 accounts,
    a page of 100 in 1.4 ms, where the scan of every account took 12."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(ACCOUNTS_PAGE, id_prefix, after_id, limit)
    return [(store.account_of(r), r["create_time"]) for r in rows]


async def transfers_page(
    pool: asyncpg.Pool, account_id: str, after_seq: int, start: datetime, end: datetime, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` of the account's transfers after `after_seq`, in seq order."""
    async with pool.acquire() as conn:
        exists = await conn.fetchval("SELECT true FROM ledger_accounts WHERE id = $1", account_id)
        if not exists:
            raise account_not_found(account_id)
        return list(
            await conn.fetch(statement.ACCOUNT_TRANSFERS, account_id, after_seq, start, end, limit)
        )


async def statement_csv(
    pool: asyncpg.Pool, account_id: str, start: datetime, end: datetime
) -> AsyncIterator[bytes]:
    """The account's statement as CSV pieces, from one consistent snapshot."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT id FROM ledger_accounts WHERE id = $1", account_id)
        if row is None:
            raise account_not_found(account_id)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for chunk in statement.csv_chunks(conn, account_id, start, end):
                yield chunk


async def create_accounts(pool: asyncpg.Pool, accounts: list[Account]) -> list[Result]:
    async with pool.acquire() as conn:
        return await store.create_accounts(conn, accounts)


class LedgerReader:
    """The reads and account creation above, bound to the pool, so that
    LedgerService (core/api) holds no pool and runs no SQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def account(self, account_id: str) -> tuple[Account, datetime]:
        return await account(self.pool, account_id)

    async def accounts_page(
        self, id_prefix: str, after_id: str, limit: int
    ) -> list[tuple[Account, datetime]]:
        return await accounts_page(self.pool, id_prefix, after_id, limit)

    async def transfers_page(
        self, account_id: str, after_seq: int, start: datetime, end: datetime, limit: int
    ) -> list[asyncpg.Record]:
        return await transfers_page(self.pool, account_id, after_seq, start, end, limit)

    def statement_csv(
        self, account_id: str, start: datetime, end: datetime
    ) -> AsyncIterator[bytes]:
        return statement_csv(self.pool, account_id, start, end)

    async def create_accounts(self, accounts: list[Account]) -> list[Result]:
        return await create_accounts(self.pool, accounts)
