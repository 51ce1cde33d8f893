"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio

import asyncpg

from kassa.core.v1 import invoice_pb2
from localstack.fullstack import LocalStack


def create(stack: LocalStack, invoices, parent: str, order: str) -> invoice_pb2.Invoice:
    return invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id=order,
            asset=stack.token_asset,
            price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
        )
    ).invoice


def payments_rows(dsn: str, invoice_id: str) -> list[asyncpg.Record]:
    async def query() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(
                await conn.fetch("SELECT * FROM payments WHERE invoice_id = $1", invoice_id)
            )
        finally:
            await conn.close()

    return asyncio.run(query())


def cursor_height(stack: LocalStack) -> int:
    """The height of the core's cursor on the stack's chain; -1 without one."""

    async def query() -> int:
        conn = await asyncpg.connect(stack.dsn)
        try:
            found = await conn.fetchval(
                "SELECT height FROM chain_cursors WHERE chain = $1", stack.chain
            )
            return int(found) if found is not None else -1
        finally:
            await conn.close()

    return asyncio.run(query())
