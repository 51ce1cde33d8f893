"""Invoices other replicas created, for this replica's in-memory index.

Each replica adds the invoices it creates to its own ActiveInvoiceIndex; the
replica that leads a chain's follower must also match deposits to invoices
created elsewhere. It reads them from the outbox (invoice.created), whose
sequences commit in order: after reading up to N it has seen every invoice
committed at or below N. The chain leader catches up before each block and
mempool batch; a customer pays an address only after its invoice committed,
so the block that carries the payment is matched against it.
"""

from __future__ import annotations

import asyncio

import asyncpg

from core.chain.index import ActiveInvoiceIndex

# One statement, one snapshot: `last` and the events at or below it agree.
_SINCE = """
WITH head AS (SELECT last FROM event_sequence WHERE id = 1)
SELECT (SELECT last FROM head) AS last, i.id, i.deposit_address
  FROM events e JOIN invoices i ON i.id = split_part(e.resource_name, '/', 4)
 WHERE e.sequence > $1 AND e.sequence <= (SELECT last FROM head)
   AND e.type = 'invoice.created' AND e.resource_type = 'invoice'
UNION ALL SELECT (SELECT last FROM head), NULL, NULL"""


async def outbox_head(conn: asyncpg.Connection) -> int:
    """The sequence to start after: read it before loading the index, so an
    invoice committed between the two is read again, never missed."""
    return int(await conn.fetchval("SELECT last FROM event_sequence WHERE id = 1"))


class InvoiceFeed:
    def __init__(self, pool: asyncpg.Pool, index: ActiveInvoiceIndex, after: int) -> None:
        assert after >= 0, after
        self.pool = pool
        self.index = index
        self.after = after
        self._lock = asyncio.Lock()  # followers of several chains share one feed

    async def catch_up(self) -> int:
        """Adds invoices created since the last call; returns how many rows it read."""
        async with self._lock, self.pool.acquire() as conn:
            rows = await conn.fetch(_SINCE, self.after)
            added = 0
            for row in rows:
                if row["id"] is not None:
                    self.index.add(row["deposit_address"], row["id"])
                    added += 1
            last = int(rows[0]["last"])  # every row carries it; the UNION row makes one
            assert last >= self.after, (last, self.after)  # the outbox never goes back
            self.after = last
            return added
