"""Payouts and refunds: the logic behind PayoutService, and `save`, the one
writer of a payout's state (used by the API and the worker alike): it writes
what `machine.decide` returned, with the ledger bookings and the event the
decision names, in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core import names, reasons
from core.errors import Code, Refusal, not_found
from core.events import snapshots
from core.events.outbox import append
from core.invoices import lifecycle
from core.ledger import settlement
from core.payouts import destinations, ledger, machine, nonces, store, tracking
from core.payouts.machine import State


@dataclass(frozen=True)
class PayoutSpec:
    merchant_id: str
    kind: str  # payout | refund
    chain: str
    asset: str
    destination: str
    amount: int | None  # None (refunds only): everything not yet refunded
    reference: str
    request_id: str | None
    invoice_id: str | None = None

    def fingerprint(self) -> bytes:
        fields = (
            self.kind,
            self.invoice_id,
            self.asset,
            self.destination,
            self.amount,
            self.reference,
        )
        return hashlib.sha256(repr(fields).encode()).digest()


def as_machine(row: asyncpg.Record, candidates: tuple[str, ...]) -> machine.Payout:
    return machine.Payout(
        state=State(row["state"]),
        nonce=None if row["nonce"] is None else int(row["nonce"]),
        candidates=candidates,
        landed=row["landed_tx_hash"],
        replacing=row["replacing"],
        hold_released=row["hold_released"],
        reason=row["waiting_reason"] or row["failure_reason"],
        reorgs=int(row["reorgs"]),
        finalized=row["final_time"] is not None,
    )


async def candidates_of(conn: asyncpg.Connection, payout_id: str) -> tuple[str, ...]:
    rows = await conn.fetch(
        "SELECT tx_hash FROM payout_transactions WHERE payout_id = $1 ORDER BY create_time, tx_hash",
        payout_id,
    )
    return tuple(r["tx_hash"] for r in rows)


async def lock(conn: asyncpg.Connection, payout_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM payouts WHERE id = $1 FOR UPDATE", payout_id)


async def save(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    decision: machine.Decision,
    now: datetime,
    fee_wei: int = 0,
    **columns: Any,
) -> asyncpg.Record:
    """Writes a decided step in the caller's transaction (row locked by the caller):
    state, the hold's release, the tentative nonce's return, the event."""
    assert decision.refusal is None, decision.refusal
    p = decision.payout
    # The row as the machine saw it (candidates aside: the caller's transaction
    # may have stored the one just signed).
    before = as_machine(row, p.candidates)
    if decision.undo is not None:
        # A reorg removed landing number `before.reorgs`: reverse what it booked.
        fee = int(row["network_fee"] or 0)
        succeeded = decision.undo is machine.Hold.POST
        await ledger.post(conn, ledger.undo(row, succeeded, fee, before.reorgs), now)
    elif decision.rebook is not None:
        succeeded = decision.rebook is machine.Hold.POST
        await ledger.post(conn, ledger.landing(row, succeeded, fee_wei, p.reorgs), now)
    elif decision.hold is not None and row["kind"] == ledger.NONCE_FILL:
        # No hold: a nonce fill moved nothing; whenever it was mined it cost its gas.
        await ledger.post(conn, ledger.network_fee(row, fee_wei), now)
    elif decision.hold is not None and row["kind"] in ledger.SWEEP_KINDS:
        # No hold: a sweep or gas funding books the move of custody and its gas.
        landed = decision.hold is machine.Hold.POST
        await ledger.post(conn, ledger.sweep_final(row, landed, fee_wei), now)
    elif decision.hold is not None:
        batch = ledger.release(row, post=decision.hold is machine.Hold.POST)
        batch += ledger.network_fee(row, fee_wei)
        await ledger.post(conn, batch, now)
    elif fee_wei:
        await ledger.post(conn, ledger.network_fee(row, fee_wei), now)
    if decision.release_nonce and row["nonce"] is not None:
        await nonces.release(conn, row["chain"], row["key_id"], int(row["nonce"]))
    values: dict[str, Any] = {
        "state": p.state.value,
        "nonce": p.nonce,
        "replacing": p.replacing,
        "hold_released": p.hold_released,
        "landed_tx_hash": p.landed,
        "waiting_reason": p.reason if p.state is State.WAITING_APPROVAL else "",
        "failure_reason": p.reason if p.state is State.FAILED else "",
        "update_time": now,
        **columns,
    }
    if p.state is State.CONFIRMED:
        values["confirm_time"] = now
    if p.reorgs != before.reorgs:
        values["reorgs"] = p.reorgs
    if p.finalized and not before.finalized:
        values["final_time"] = now
    names = list(values)
    sets = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
    fresh = await conn.fetchrow(
        f"UPDATE payouts SET {sets} WHERE id = $1 RETURNING *",  # noqa: S608 (column names are ours)
        row["id"],
        *values.values(),
    )
    assert fresh is not None
    if decision.event_type:
        await announce(conn, fresh, decision.event_type)
    return fresh


async def announce(conn: asyncpg.Connection, row: asyncpg.Record, event_type: str) -> None:
    """Writes a payout.* event (refund.* for a refund) carrying the Payout as it stands."""
    if row["merchant_id"] is None:
        return  # sweeps belong to no merchant: no merchant event
    if row["kind"] == "refund":
        event_type = "refund." + event_type.removeprefix("payout.")
    view = await store.view(conn, row)
    await append(conn, [snapshots.payout_event(event_type, row, view.transactions, view.approvals)])


def _failed(code: Code, reason: str, message: str, **metadata: object) -> Refusal:
    return Refusal(code, reason, message, metadata={k: str(v) for k, v in metadata.items()})


class Payouts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        hot_key_id: str,
        policy: destinations.Policy | None = None,
    ) -> None:
        self.pool = pool
        self.hot_key_id = hot_key_id
        self.policy = policy or destinations.Policy({})

    async def create(self, spec: PayoutSpec, now: datetime) -> asyncpg.Record:
        fingerprint = spec.fingerprint()
        for _ in range(3):
            async with self.pool.acquire() as conn:
                replay = await self._replay(conn, spec, fingerprint)
                if replay is not None:
                    return replay
                try:
                    async with conn.transaction():
                        return await self._create(conn, spec, fingerprint, now)
                except asyncpg.UniqueViolationError:
                    continue  # a concurrent retry of the same request won: answer as it
        raise RuntimeError("payout creation kept racing")

    async def _replay(
        self, conn: asyncpg.Connection, spec: PayoutSpec, fingerprint: bytes
    ) -> asyncpg.Record | None:
        if spec.request_id is None:
            return None
        row = await conn.fetchrow(
            "SELECT * FROM payouts WHERE merchant_id = $1 AND request_id = $2",
            spec.merchant_id,
            spec.request_id,
        )
        if row is not None and bytes(row["request_hash"]) != fingerprint:
            raise Refusal(
                Code.ALREADY_EXISTS,
                "REQUEST_ID_REUSED",
                "request_id was used for a different request",
                metadata={"request_id": spec.request_id},
            )
        return row

    async def _legs(
        self, conn: asyncpg.Connection, spec: PayoutSpec
    ) -> tuple[int, list[tuple[str, int]]]:
        """(amount, hold legs as (source account kind, amount))."""
        if spec.kind == "payout":
            assert spec.amount is not None
            return spec.amount, [("available", spec.amount)]
        assert spec.invoice_id is not None
        rows = await lifecycle.lock_invoices(conn, [spec.invoice_id])
        invoice_name = f"merchants/{spec.merchant_id}/invoices/{spec.invoice_id}"
        if not rows or rows[0]["merchant_id"] != spec.merchant_id:
            raise not_found("invoice", invoice_name)
        invoice = rows[0]
        # The invoices' decider says what is refundable: funds parked on a
        # cancelled, refunded, marked or expired invoice are, too (issue 19).
        if lifecycle.refundable_of(invoice) == 0:
            raise _failed(
                Code.FAILED_PRECONDITION,
                "INVOICE_NOT_REFUNDABLE",
                f"a {invoice['state']} invoice has nothing to refund",
                state=invoice["state"],
            )
        used: dict[str, int] = {}
        in_progress = 0
        for r in await conn.fetch(
            """SELECT state, amount, hold_sources, hold_amounts FROM payouts
                WHERE invoice_id = $1 AND kind = 'refund' AND NOT state = ANY($2::text[])""",
            spec.invoice_id,
            [State.FAILED, State.CANCELLED],
        ):
            if State(r["state"]) is not State.CONFIRMED:
                in_progress += int(r["amount"])
            for source, amount in zip(r["hold_sources"], r["hold_amounts"], strict=True):
                used[source] = used.get(source, 0) + int(amount)
        received, refunded = int(invoice["amount_received"]), int(invoice["amount_refunded"])
        try:
            amount = tracking.refund_amount(spec.amount, received, refunded, in_progress)
        except tracking.RefundRefused as refused:
            raise _failed(
                Code.FAILED_PRECONDITION,
                "REFUND_EXCEEDS_RECEIVED",
                f"refunds would exceed the {received} received (refunded {refunded}, "
                f"in progress {in_progress})",
                received=received,
                refunded=refunded,
                in_progress=in_progress,
                refundable=refused.refundable,
            ) from None
        done = (await settlement.settled(conn, [invoice]))[spec.invoice_id]
        # What this invoice left in each account: a part booked to the merchant's
        # receivable after a reorg (settlement.py) is not there.
        room = {
            "refunds_payable": done.excess - done.owed_excess - used.get("refunds_payable", 0),
            "incoming": received
            - done.available
            - done.excess
            + done.owed_incoming
            - used.get("incoming", 0),
        }
        legs = tracking.refund_legs(amount, room)
        return amount, legs

    async def _check_destination(self, conn: asyncpg.Connection, spec: PayoutSpec) -> None:
        own = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM payout_nonces WHERE lower(address) = $1)
                   OR EXISTS (SELECT 1 FROM invoices WHERE deposit_address = $1)""",
            spec.destination,
        )
        why = self.policy.refusal(spec.destination, bool(own))
        if why is not None:
            field = "payout.destination" if spec.kind == "payout" else "destination"
            raise Refusal(
                Code.INVALID_ARGUMENT,
                reasons.DESTINATION_REFUSED,
                f"{spec.destination} is refused as a destination: {why}",
                violations=[(field, why)],
                metadata={"destination": spec.destination},
            )

    async def _create(
        self, conn: asyncpg.Connection, spec: PayoutSpec, fingerprint: bytes, now: datetime
    ) -> asyncpg.Record:
        if await conn.fetchval("SELECT 1 FROM merchants WHERE id = $1", spec.merchant_id) is None:
            raise not_found("merchant", f"merchants/{spec.merchant_id}")
        await self._check_destination(conn, spec)
        amount, legs = await self._legs(conn, spec)
        await ledger.ensure(conn, spec.merchant_id, spec.asset, spec.chain)
        accounts = {
            source: f"merchant:{spec.merchant_id}:{spec.asset}:{source}" for source, _ in legs
        }
        free = await ledger.spendable(conn, list(accounts.values()))
        for source, need in legs:
            if free.get(accounts[source], 0) < need:
                raise _failed(
                    Code.FAILED_PRECONDITION,
                    "INSUFFICIENT_FUNDS",
                    f"the merchant's {source} balance of {spec.asset} is "
                    f"{free.get(accounts[source], 0)}, {need} needed",
                    account=accounts[source],
                    balance=free.get(accounts[source], 0),
                    needed=need,
                )
        row = await conn.fetchrow(
            """INSERT INTO payouts (id, merchant_id, kind, invoice_id, chain, asset, destination,
                                    amount, reference, request_id, request_hash, state, key_id,
                                    hold_sources, hold_amounts, create_time, update_time,
                                    next_attempt_time)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $16, $12, $13, $14,
                       $15, $15, $15)
               RETURNING *""",
            secrets.token_hex(10),
            spec.merchant_id,
            spec.kind,
            spec.invoice_id,
            spec.chain,
            spec.asset,
            spec.destination,
            amount,
            spec.reference,
            spec.request_id,
            fingerprint,
            self.hot_key_id,
            [s for s, _ in legs],
            [a for _, a in legs],
            now,
            State.CREATED,
        )
        assert row is not None
        await ledger.post(conn, ledger.holds(row), now)
        await announce(conn, row, "payout.created")
        return row

    async def views(self, rows: Sequence[asyncpg.Record]) -> list[store.PayoutView]:
        """The rows with their transactions and approvals, for an answer."""
        async with self.pool.acquire() as conn:
            return [await store.view(conn, row) for row in rows]

    async def refunded_invoice(self, merchant_id: str, invoice_id: str) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await store.refunded_invoice(conn, merchant_id, invoice_id)

    async def get(self, merchant_id: str, payout_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM payouts WHERE merchant_id = $1 AND id = $2", merchant_id, payout_id
            )
        if row is None:
            raise not_found("payout", names.payout(merchant_id, payout_id))
        return row

    async def list(
        self,
        merchant_id: str,
        states: list[str],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    """SELECT * FROM payouts
                        WHERE merchant_id = $1
                          AND (cardinality($2::text[]) = 0 OR state = ANY($2::text[]))
                          AND ($3::timestamptz IS NULL OR (create_time, id) > ($3, $4))
                        ORDER BY create_time, id LIMIT $5""",
                    merchant_id,
                    states,
                    after[0] if after else None,
                    after[1] if after else "",
                    limit,
                )
            )

    async def cancel(self, merchant_id: str, payout_id: str, now: datetime) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock(conn, payout_id)
            if row is None or row["merchant_id"] != merchant_id:
                raise not_found("payout", names.payout(merchant_id, payout_id))
            if State(row["state"]) is State.CANCELLED:
                return row  # a retry of the same cancel
            decision = machine.decide(
                as_machine(row, await candidates_of(conn, payout_id)), machine.Cancel()
            )
            if decision.refusal is not None:
                raise _failed(
                    Code.FAILED_PRECONDITION,
                    "PAYOUT_NOT_CANCELLABLE",
                    f"a {row['state']} payout cannot be cancelled: it may already be signed",
                    state=row["state"],
                )
            return await save(conn, row, decision, now)

    async def approve(
        self,
        merchant_id: str,
        payout_id: str,
        approver_key_id: str,
        signature: bytes,
        digest_hex: str,
        now: datetime,
    ) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock(conn, payout_id)
            if row is None or row["merchant_id"] != merchant_id:
                raise not_found("payout", names.payout(merchant_id, payout_id))
            if State(row["state"]) is not State.WAITING_APPROVAL or row["sign_digest"] is None:
                raise _failed(
                    Code.FAILED_PRECONDITION,
                    "PAYOUT_NOT_WAITING",
                    f"a {row['state']} payout takes no approvals",
                    state=row["state"],
                )
            if bytes(row["sign_digest"]).hex() != digest_hex:
                raise _failed(
                    Code.FAILED_PRECONDITION,
                    "SIGN_REQUEST_CHANGED",
                    "the payout's sign request changed (it expired or its nonce moved): "
                    "fetch it again and sign the new digest",
                    body_digest=bytes(row["sign_digest"]).hex(),
                )
            await conn.execute(
                """INSERT INTO payout_approvals (payout_id, body_digest, approver_key_id, signature)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (payout_id, body_digest, approver_key_id)
                   DO UPDATE SET signature = EXCLUDED.signature""",
                payout_id,
                row["sign_digest"],
                approver_key_id,
                signature,
            )
            # Wake the worker now rather than at its next scheduled retry.
            fresh = await conn.fetchrow(
                "UPDATE payouts SET next_attempt_time = $2, update_time = $2 WHERE id = $1 RETURNING *",
                payout_id,
                now,
            )
            assert fresh is not None
            return fresh
