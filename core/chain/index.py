"""Active invoices by deposit address, in memory.

A cache for matching a block's transfers without a database round trip per
transfer. It is rebuilt from PostgreSQL at start and is never the system of
record: a match is confirmed against the invoices table in the same
transaction that records the payment.
"""

from __future__ import annotations

import asyncpg


class ActiveInvoiceIndex:
    def __init__(self) -> None:
        self._by_address: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_address)

    def add(self, address: str, invoice_id: str) -> None:
        self._by_address[address.lower()] = invoice_id

    def remove(self, address: str) -> None:
        self._by_address.pop(address.lower(), None)

    def lookup(self, address: str) -> str | None:
        return self._by_address.get(address)

    async def load(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT id, deposit_address FROM invoices WHERE state NOT IN ('expired', 'cancelled')"
        )
        for r in rows:
            self.add(r["deposit_address"], r["id"])
        return len(rows)
