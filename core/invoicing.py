"""Creating and reading invoices (the logic behind InvoiceService)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import grpc

from core import lifecycle
from core.api.errors import ApiError, not_found
from core.api.validate import InvoiceSpec
from core.chain.hd import DepositAddresses
from core.chain.index import ActiveInvoiceIndex
from core.config import Config
from core.domain.invoice_state import State
from core.domain.money import fiat_to_base_units
from core.events.outbox import append
from core.rates.sources import NoRateError, RateSource, quote


@dataclass
class Invoicing:
    pool: asyncpg.Pool
    config: Config
    addresses: DepositAddresses
    index: ActiveInvoiceIndex
    rates: list[RateSource]
    clock: Callable[[], datetime]

    async def create(self, spec: InvoiceSpec, request_fingerprint: bytes) -> asyncpg.Record:
        if spec.request_id is not None:
            existing = await self._replay(spec, request_fingerprint)
            if existing is not None:
                return existing
        now = self.clock()
        price_amount = quote_rate = quote_source = None
        quote_time = None
        if spec.price is not None:
            assert spec.currency is not None
            try:
                q = await quote(self.rates, spec.asset.symbol, spec.currency, now)
            except NoRateError as exc:
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "NO_RATE",
                    str(exc),
                    metadata={"pair": f"{spec.asset.symbol}/{spec.currency}"},
                ) from None
            due = fiat_to_base_units(spec.price, q.rate, spec.asset.decimals)
            price_amount, quote_rate, quote_source, quote_time = (
                str(spec.price),
                str(q.rate),
                q.source,
                q.quote_time,
            )
        else:
            assert spec.asset_amount is not None
            due = spec.asset_amount
        chain = self.config.chain(spec.asset.chain)
        assert chain is not None, "config guarantees every asset's chain is configured"
        invoice_id = secrets.token_hex(10)
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    index = int(await conn.fetchval("SELECT nextval('deposit_index_seq')"))
                    address = self.addresses.address(index)
                    row = await conn.fetchrow(
                        """INSERT INTO invoices (id, merchant_id, merchant_order_id, request_id,
                               request_hash, chain, asset, asset_decimals, amount_due, price_amount,
                               price_currency, quote_rate, quote_source, quote_time, deposit_address,
                               derivation_index, confirmations_required, expire_time, state,
                               metadata, create_time, update_time)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                                   $16, $17, $18, $19, $20, $21, $21)
                           RETURNING *""",
                        invoice_id,
                        spec.merchant_id,
                        spec.merchant_order_id,
                        spec.request_id,
                        request_fingerprint,
                        chain.id,
                        spec.asset.id,
                        spec.asset.decimals,
                        due,
                        price_amount,
                        spec.currency if spec.price is not None else None,
                        quote_rate,
                        quote_source,
                        quote_time,
                        address,
                        index,
                        chain.confirmations,
                        now + timedelta(seconds=spec.ttl_s),
                        State.AWAITING_PAYMENT.value,
                        json.dumps(spec.metadata),
                        now,
                    )
                    await append(conn, [lifecycle.snapshot_event("invoice.created", row)])
            except asyncpg.UniqueViolationError:
                # A concurrent retry with the same request_id won the race.
                existing = await self._replay(spec, request_fingerprint)
                if existing is None:
                    raise
                return existing
        # After commit, before answering: a payment can only follow the answer.
        self.index.add(address, invoice_id)
        return row

    async def _replay(self, spec: InvoiceSpec, fingerprint: bytes) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM invoices WHERE merchant_id = $1 AND request_id = $2",
                spec.merchant_id,
                spec.request_id,
            )
        if row is None:
            return None
        if bytes(row["request_hash"]) != fingerprint:
            raise ApiError(
                grpc.StatusCode.ALREADY_EXISTS,
                "REQUEST_ID_REUSED",
                f"request_id {spec.request_id!r} was used for a different request",
                metadata={"request_id": spec.request_id or "", "invoice": row["id"]},
            )
        return row

    async def get(
        self, merchant_id: str, invoice_id: str, name: str
    ) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM invoices WHERE merchant_id = $1 AND id = $2", merchant_id, invoice_id
            )
            if row is None:
                raise not_found("invoice", name)
            payments = (await lifecycle.payments_of(conn, [invoice_id]))[invoice_id]
        return row, payments

    async def list(
        self, merchant_id: str, page_size: int, after: tuple[datetime, str] | None
    ) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            if after is None:
                return list(
                    await conn.fetch(
                        """SELECT * FROM invoices WHERE merchant_id = $1
                        ORDER BY create_time DESC, id DESC LIMIT $2""",
                        merchant_id,
                        page_size + 1,
                    )
                )
            return list(
                await conn.fetch(
                    """SELECT * FROM invoices WHERE merchant_id = $1 AND (create_time, id) < ($2, $3)
                    ORDER BY create_time DESC, id DESC LIMIT $4""",
                    merchant_id,
                    after[0],
                    after[1],
                    page_size + 1,
                )
            )


def fingerprint(request_bytes: bytes) -> bytes:
    return hashlib.sha256(request_bytes).digest()
