"""Ledger transfers written by hand, past the rules: one multi-row INSERT or
one COPY, as a client with SQL access (or the store's streaming path) writes
them; the posting trigger's tests use them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg

from core.ledger import check, store
from core.ledger.copy_rows import COLUMNS, RowEncoder
from core.ledger.rules import AccountFlags, Transfer

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
TOTALS = next(c for c in check.CHECKS if c.name == "account totals")
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def insert(conn: asyncpg.Connection, rows: list[Transfer]) -> None:
    """One multi-row INSERT, as a client with SQL access could write it."""
    await conn.execute(store._INSERT, *store.transfer_columns(rows), AT)


async def copy(conn: asyncpg.Connection, rows: list[Transfer]) -> None:
    """One COPY, as the store streams a big batch."""
    data = RowEncoder(AT).encode_each(rows)

    async def source() -> AsyncIterator[bytes]:
        yield data

    await conn.copy_to_table("ledger_transfers", source=source(), columns=COLUMNS)
