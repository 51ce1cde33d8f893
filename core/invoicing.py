"""Creating, reading, cancelling and marking invoices (the logic behind InvoiceService)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import grpc

from core import lifecycle
from core.chain.hd import DepositAddresses
from core.chain.index import ActiveInvoiceIndex
from core.config import Config
from core.domain import invoice_state as sm
from core.domain.invoice_specs import InvoiceFilter, InvoiceSpec
from core.domain.money import fiat_to_base_units
from core.errors import ApiError, not_found
from core.events.outbox import append
from core.rates.sources import NoRateError, Quoter, RateSource, quote


@dataclass
class Invoicing:
    pool: asyncpg.Pool
    config: Config
    addresses: DepositAddresses
    index: ActiveInvoiceIndex
    rates: Sequence[RateSource] | Quoter
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
                    metadata={
                        "pair": exc.pair,
                        **{f"source.{a.source}": a.reason for a in exc.attempts},
                    },
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
        confirmations = chain.confirmations_for(spec.price, spec.currency)
        tolerance = due * self.config.underpayment_tolerance_bps // 10_000
        expire_time = now + timedelta(seconds=spec.ttl_s)
        invoice_id = secrets.token_hex(10)
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    index = await conn.fetchval("SELECT nextval('deposit_index_seq')")
                    address = self.addresses.address(index)
                    row = await conn.fetchrow(
                        """INSERT INTO invoices (id, merchant_id, merchant_order_id, request_id,
                               request_hash, chain, asset, asset_decimals, amount_due, price_amount,
                               price_currency, quote_rate, quote_source, quote_time, deposit_address,
                               derivation_index, confirmations_required, expire_time, state,
                               metadata, create_time, update_time, underpayment_tolerance,
                               monitoring_end_time)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                                   $16, $17, $18, $19, $20, $21, $21, $22, $23)
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
                        confirmations,
                        expire_time,
                        sm.State.AWAITING_PAYMENT.value,
                        json.dumps(spec.metadata),
                        now,
                        tolerance,
                        expire_time + timedelta(seconds=self.config.late_payment_window_s),
                    )
                    await append(conn, [lifecycle.snapshot_event("invoice.created", row)])
            except asyncpg.UniqueViolationError:
                # A concurrent retry with the same request_id won the race.
                existing = await self._replay(spec, request_fingerprint)
                if existing is None:
                    raise
                return existing
            except asyncpg.ForeignKeyViolationError:
                raise not_found("merchant", f"merchants/{spec.merchant_id}") from None
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
        self,
        merchant_id: str,
        page_size: int,
        after: tuple[datetime, str] | None,
        where: InvoiceFilter,
    ) -> list[asyncpg.Record]:
        clauses = ["merchant_id = $1"]
        args: list[object] = [merchant_id]

        def arg(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        if where.states:
            clauses.append(f"state = ANY({arg(list(where.states))}::text[])")
        if where.flags:
            clauses.append(f"flags @> {arg(list(where.flags))}::text[]")
        if where.asset:
            clauses.append(f"asset = {arg(where.asset)}")
        if where.merchant_order_id:
            clauses.append(f"merchant_order_id = {arg(where.merchant_order_id)}")
        if where.create_time_start is not None:
            clauses.append(f"create_time >= {arg(where.create_time_start)}")
        if where.create_time_end is not None:
            clauses.append(f"create_time < {arg(where.create_time_end)}")
        if after is not None:
            clauses.append(f"(create_time, id) < ({arg(after[0])}, {arg(after[1])})")
        sql = (
            f"SELECT * FROM invoices WHERE {' AND '.join(clauses)} "  # noqa: S608 (placeholders only)
            f"ORDER BY create_time DESC, id DESC LIMIT {arg(page_size + 1)}"
        )
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def cancel(self, merchant_id: str, invoice_id: str, name: str) -> asyncpg.Record:
        row = await self._decide_one(merchant_id, invoice_id, name, sm.Cancel())
        self.index.remove(row["deposit_address"])
        return row

    async def mark(
        self, merchant_id: str, invoice_id: str, name: str, state: sm.State, reason: str, actor: str
    ) -> asyncpg.Record:
        return await self._decide_one(
            merchant_id, invoice_id, name, sm.Mark(state), (reason, actor)
        )

    async def _decide_one(
        self,
        merchant_id: str,
        invoice_id: str,
        name: str,
        event: sm.Event,
        mark: tuple[str, str] | None = None,
    ) -> asyncpg.Record:
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT * FROM invoices WHERE merchant_id = $1 AND id = $2 FOR UPDATE",
                merchant_id,
                invoice_id,
            )
            if not rows:
                raise not_found("invoice", name)
            if mark is not None:
                # The mark's who and why are recorded before the event snapshot is taken.
                assert isinstance(event, sm.Mark)
                await conn.execute(
                    """UPDATE invoices SET mark_state = $2, mark_reason = $3, mark_actor = $4, mark_time = $5
                        WHERE id = $1 AND NOT ('marked' = ANY(flags) AND state = $2)""",
                    invoice_id,
                    event.state.value,
                    mark[0],
                    mark[1],
                    now,
                )
                rows = await conn.fetch("SELECT * FROM invoices WHERE id = $1", invoice_id)
            applied = await lifecycle.apply(conn, rows, {invoice_id: event}, now)
            refusal = applied.decisions[invoice_id].refusal
            if refusal is not None:
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    refusal.reason,
                    refusal.message,
                    metadata={"name": name},
                )
        return applied.rows.get(invoice_id, rows[0])


def fingerprint(request_bytes: bytes) -> bytes:
    return hashlib.sha256(request_bytes).digest()
