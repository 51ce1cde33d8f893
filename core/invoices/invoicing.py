"""Creating, reading, cancelling and marking invoices (the logic behind InvoiceService)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import asyncpg

from core import idempotency, reasons
from core.chain.hd import DepositAddresses
from core.chain.index import ActiveInvoiceIndex
from core.domain.invoice_specs import InvoiceFilter, InvoiceSpec
from core.domain.money import fiat_to_base_units
from core.errors import Code, Refusal, not_found, precondition
from core.events.outbox import append
from core.invoices import lifecycle
from core.invoices import state as sm
from core.rates.sources import NoRateError, Quoter, RateSource, quote


class _Chain(Protocol):
    @property
    def id(self) -> str: ...

    def confirmations_for(self, value: Decimal | None, currency: str | None) -> int: ...


class Settings(Protocol):
    """What invoicing reads of the configuration (core/config.py's Config has
    it; an area does not import the composed configuration)."""

    @property
    def underpayment_tolerance_bps(self) -> int: ...

    @property
    def late_payment_window_s(self) -> int: ...

    def chain(self, chain_id: str) -> _Chain | None: ...


@dataclass
class Invoicing:
    pool: asyncpg.Pool
    config: Settings
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
                raise Refusal(
                    Code.FAILED_PRECONDITION,
                    reasons.NO_RATE,
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
        assert spec.request_id is not None
        idempotency.check(
            row["request_hash"],
            fingerprint,
            spec.request_id,
            f"merchants/{spec.merchant_id}/invoices/{row['id']}",
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

    async def cancel(
        self,
        merchant_id: str,
        invoice_id: str,
        name: str,
        request_id: str | None = None,
        request_hash: bytes = b"",
    ) -> asyncpg.Record:
        # The address stays watched: funds that reach it after the cancel are
        # recorded, announced and refundable (core/invoices/state.py).
        key = _key("invoices.cancel", merchant_id, request_id, request_hash)
        return await self._decide_one(merchant_id, invoice_id, name, sm.Cancel(), key)

    async def mark(
        self,
        merchant_id: str,
        invoice_id: str,
        name: str,
        state: sm.State,
        reason: str,
        actor: str,
        request_id: str | None = None,
        request_hash: bytes = b"",
    ) -> asyncpg.Record:
        key = _key("invoices.mark", merchant_id, request_id, request_hash)
        return await self._decide_one(
            merchant_id, invoice_id, name, sm.Mark(state), key, (reason, actor)
        )

    async def _decide_one(
        self,
        merchant_id: str,
        invoice_id: str,
        name: str,
        event: sm.Cancel | sm.Mark,
        key: idempotency.Key | None,
        mark: tuple[str, str] | None = None,
    ) -> asyncpg.Record:
        try:
            return await self._decide_locked(merchant_id, invoice_id, name, event, key, mark)
        except asyncpg.UniqueViolationError:
            # A concurrent first use of the same request_id committed before us.
            assert key is not None
            async with self.pool.acquire() as conn:
                replayed = await self._replay_key(conn, key)
            if replayed is None:
                raise
            return replayed

    async def _replay_key(
        self, conn: asyncpg.Connection, key: idempotency.Key
    ) -> asyncpg.Record | None:
        """The first answer's resource as it now stands, if the id was used
        (REQUEST_ID_REUSED if with another body)."""
        first = await idempotency.recall(conn, key)
        if first is None:
            return None
        idempotency.check(first.request_hash, key.request_hash, key.request_id, first.resource)
        _, _, first_id = first.resource.rpartition("/")
        row = await conn.fetchrow(
            "SELECT * FROM invoices WHERE merchant_id = $1 AND id = $2", key.owner, first_id
        )
        assert row is not None, first  # invoices are never deleted
        return row

    async def _decide_locked(
        self,
        merchant_id: str,
        invoice_id: str,
        name: str,
        event: sm.Cancel | sm.Mark,
        key: idempotency.Key | None,
        mark: tuple[str, str] | None,
    ) -> asyncpg.Record:
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            chain = await conn.fetchval(
                "SELECT chain FROM invoices WHERE merchant_id = $1 AND id = $2",
                merchant_id,
                invoice_id,
            )
            if chain is None:
                raise not_found("invoice", name)
            # The chain applier's lock, taken first as it does (cursor, then the
            # invoice): no block records a payment between the look at the funds
            # and the commit, so a cancel or mark losing a race to a payment is
            # refused, and one winning it leaves the payment to be recorded and
            # announced on the closed invoice. (Before a chain's first block there
            # is no cursor row to lock; a payment then lands as late funds.)
            await conn.execute("SELECT 1 FROM chain_cursors WHERE chain = $1 FOR UPDATE", chain)
            rows = await lifecycle.lock_invoices(conn, [invoice_id])
            # The authoritative look at the request_id, under the invoice's lock: a
            # concurrent retry of this very request has committed by now.
            if key is not None and (replayed := await self._replay_key(conn, key)) is not None:
                return replayed
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
            # The row's sums are the funds seen: the block applier writes them with
            # the payments, under the locks we now hold.
            applied = await lifecycle.apply(conn, rows, {invoice_id: event}, now)
            refusal = applied.decisions[invoice_id].refusal
            if refusal is not None:
                raise _refused(refusal, name)  # rolls the mark's note back too
            if key is not None:
                await idempotency.remember(conn, key, name)
        return applied.rows.get(invoice_id, rows[0])


def _refused(refusal: sm.Refusal, name: str) -> Refusal:
    return precondition(refusal.reason, refusal.message, name=name)


def _key(
    scope: str, merchant_id: str, request_id: str | None, request_hash: bytes
) -> idempotency.Key | None:
    if request_id is None:
        return None
    return idempotency.Key(scope, merchant_id, request_id, request_hash)


def fingerprint(request_bytes: bytes) -> bytes:
    return idempotency.request_hash(request_bytes)
