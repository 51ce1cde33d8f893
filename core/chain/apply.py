"""Applies a chain's blocks and undos to the database, one transaction each.

A block's payments, the invoices' state changes, their outbox events and the
chain cursor commit together; so do an undo's reversals. After a crash the
core resumes from the stored cursor and nothing is applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg

from core import lifecycle
from core.chain.index import ActiveInvoiceIndex
from core.domain import invoice_state as sm
from core.ledger import payments as ledger_payments
from kassa.chain.v1 import adapter_pb2 as chain_pb

log = logging.getLogger("kassa.core.chain")
# Applied blocks kept for the resume locator; deeper reorgs are refused by the adapter.
BLOCK_WINDOW = 1024


def _counted(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """Payments in the invoice's own asset: only those move the merchant's money."""
    return [r for r in rows if r["counted"]]


class CursorMismatchError(RuntimeError):
    """The stream skipped or contradicted our cursor: resubscribe from it."""


class ChainApplier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chain: str,
        index: ActiveInvoiceIndex,
        clock: Callable[[], datetime],
    ) -> None:
        self.pool = pool
        self.chain = chain
        self.index = index
        self.clock = clock

    async def cursor(self) -> tuple[chain_pb.BlockCursor | None, list[chain_pb.BlockCursor]]:
        """The stored cursor and a locator of earlier applied blocks, newest first."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT height, hash FROM chain_blocks WHERE chain = $1 ORDER BY height DESC LIMIT 64",
                self.chain,
            )
            head = await conn.fetchrow(
                "SELECT height, hash FROM chain_cursors WHERE chain = $1", self.chain
            )
        if head is None:
            return None, []
        locator = [
            chain_pb.BlockCursor(height=r["height"], hash=r["hash"])
            for r in rows
            if r["height"] < head["height"]
        ]
        return chain_pb.BlockCursor(height=head["height"], hash=head["hash"]), locator

    async def apply_block(self, block: chain_pb.Block) -> int:
        """Applies one block; returns how many outbox events it wrote."""
        matches = [
            (t, invoice_id)
            for t in block.transfers
            if t.success and (invoice_id := self.index.lookup(t.to_address)) is not None
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            cursor = await conn.fetchrow(
                "SELECT height, hash FROM chain_cursors WHERE chain = $1 FOR UPDATE", self.chain
            )
            if cursor is not None:
                if block.height <= cursor["height"]:
                    known = await conn.fetchval(
                        "SELECT hash FROM chain_blocks WHERE chain = $1 AND height = $2",
                        self.chain,
                        block.height,
                    )
                    if known == block.hash:
                        return 0  # already applied: a replay after reconnect
                if block.height != cursor["height"] + 1 or block.parent_hash != cursor["hash"]:
                    raise CursorMismatchError(
                        f"block {block.height} {block.hash} does not follow cursor "
                        f"{cursor['height']} {cursor['hash']}"
                    )
            touched: set[str] = set()
            if matches:
                inserted = await conn.fetch(
                    """INSERT INTO payments (chain, tx_hash, transfer_index, invoice_id, asset,
                                             from_address, to_address, amount, block_height,
                                             block_hash, status, confirm_height, counted)
                       SELECT $1, u.tx_hash, u.idx, u.invoice_id, u.asset, u.from_address,
                              u.to_address, u.amount, $2, $3, 'confirming',
                              $2::bigint + i.confirmations_required - 1, u.asset = i.asset
                         FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::text[],
                                     $9::text[], $10::numeric[])
                              AS u(tx_hash, idx, invoice_id, asset, from_address, to_address, amount)
                         -- Another asset to the address (another token, another chain's) is kept
                         -- as evidence and flagged wrong_asset, never counted.
                         JOIN invoices i ON i.id = u.invoice_id AND $11 <= i.monitoring_end_time
                       ON CONFLICT (chain, tx_hash, transfer_index) DO UPDATE
                          SET block_height = excluded.block_height, block_hash = excluded.block_hash,
                              status = 'confirming', confirm_height = excluded.confirm_height,
                              inclusions = payments.inclusions + 1, update_time = now()
                        WHERE payments.status = 'reorged'
                       RETURNING invoice_id, tx_hash, transfer_index, asset, amount, inclusions, counted""",
                    self.chain,
                    block.height,
                    block.hash,
                    [t.tx_hash for t, _ in matches],
                    [t.index for t, _ in matches],
                    [i for _, i in matches],
                    [t.asset for t, _ in matches],
                    [t.from_address for t, _ in matches],
                    [t.to_address for t, _ in matches],
                    [int(t.amount) for t, _ in matches],
                    self.clock(),
                )
                touched.update(r["invoice_id"] for r in inserted)
                await ledger_payments.detected(conn, self.chain, _counted(inserted), self.clock())
            confirmed = await conn.fetch(
                """UPDATE payments SET status = 'confirmed', update_time = now()
                    WHERE chain = $1 AND status = 'confirming' AND confirm_height <= $2
                   RETURNING invoice_id, tx_hash, transfer_index, asset, amount, inclusions, counted""",
                self.chain,
                block.height,
            )
            touched.update(r["invoice_id"] for r in confirmed)
            await ledger_payments.confirmed(conn, self.chain, _counted(confirmed), self.clock())
            written = await self._reconsider(conn, touched, block.height, {})
            await self._move_cursor(conn, block)
        return written

    async def apply_undo(self, undo: chain_pb.Undo) -> int:
        """Reverts every block above undo.to_cursor; returns events written."""
        target = undo.to_cursor
        async with self.pool.acquire() as conn, conn.transaction():
            cursor = await conn.fetchrow(
                "SELECT height, hash FROM chain_cursors WHERE chain = $1 FOR UPDATE", self.chain
            )
            known = await conn.fetchval(
                "SELECT hash FROM chain_blocks WHERE chain = $1 AND height = $2",
                self.chain,
                target.height,
            )
            if cursor is None or (known is not None and known != target.hash):
                raise CursorMismatchError(
                    f"undo to {target.height} {target.hash} is not on our chain"
                )
            reorged = await conn.fetch(
                """UPDATE payments SET status = 'reorged', block_height = NULL, block_hash = NULL,
                                       confirm_height = NULL, update_time = now()
                    WHERE chain = $1 AND block_height > $2 AND status <> 'reorged'
                   RETURNING invoice_id, tx_hash, transfer_index, asset, amount, inclusions, counted""",
                self.chain,
                target.height,
            )
            # Payments still included below the ancestor lose the confirmations above it.
            unconfirmed = await conn.fetch(
                """UPDATE payments SET status = 'confirming', inclusions = inclusions + 1,
                                       update_time = now()
                    WHERE chain = $1 AND status = 'confirmed' AND confirm_height > $2
                   RETURNING invoice_id, tx_hash, transfer_index, asset, amount, inclusions, counted""",
                self.chain,
                target.height,
            )
            # The ledger follows: void or reverse what was reorged, re-open what lost its confirmations.
            await ledger_payments.reorged(conn, self.chain, _counted(reorged), self.clock())
            await ledger_payments.unconfirmed(conn, self.chain, _counted(unconfirmed), self.clock())
            touched = {r["invoice_id"] for r in reorged} | {r["invoice_id"] for r in unconfirmed}
            extra = {r["invoice_id"]: ["payment.reorged"] for r in reorged}
            written = await self._reconsider(conn, touched, target.height, extra)
            await conn.execute(
                "DELETE FROM chain_blocks WHERE chain = $1 AND height > $2",
                self.chain,
                target.height,
            )
            await conn.execute(
                "UPDATE chain_cursors SET height = $2, hash = $3, update_time = now() WHERE chain = $1",
                self.chain,
                target.height,
                target.hash,
            )
        log.warning(
            "reorg undone",
            extra={
                "chain": self.chain,
                "to_height": target.height,
                "from_height": undo.from_height,
                "payments": len(reorged),
            },
        )
        return written

    async def _reconsider(
        self, conn: asyncpg.Connection, ids: set[str], head_height: int, extra: dict[str, list[str]]
    ) -> int:
        if not ids:
            return 0
        rows = await lifecycle.lock_invoices(conn, ids)
        funds = await lifecycle.funds_of(conn, [r["id"] for r in rows])
        events: dict[str, sm.Event] = {r["id"]: sm.FundsObserved(funds[r["id"]]) for r in rows}
        applied = await lifecycle.apply(conn, rows, events, self.clock(), head_height, extra)
        return len(applied.events)

    async def _move_cursor(self, conn: asyncpg.Connection, block: chain_pb.Block) -> None:
        await conn.execute(
            """INSERT INTO chain_cursors (chain, height, hash) VALUES ($1, $2, $3)
               ON CONFLICT (chain) DO UPDATE SET height = $2, hash = $3, update_time = now()""",
            self.chain,
            block.height,
            block.hash,
        )
        await conn.execute(
            """INSERT INTO chain_blocks (chain, height, hash, parent_hash) VALUES ($1, $2, $3, $4)
               ON CONFLICT (chain, height) DO UPDATE SET hash = $3, parent_hash = $4""",
            self.chain,
            block.height,
            block.hash,
            block.parent_hash,
        )
        if block.height % 64 == 0:
            await conn.execute(
                "DELETE FROM chain_blocks WHERE chain = $1 AND height < $2",
                self.chain,
                block.height - BLOCK_WINDOW,
            )
