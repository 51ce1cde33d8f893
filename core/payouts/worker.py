"""Moves payouts forward: allocate a nonce and build the sign request, sign
through the signer, store the signed transaction, broadcast it, track it to
its confirmations, replace it when stuck, finalize it in the ledger, and keep
tracking a landed payout until the chain's finality depth (a reorg that
removes it sends the stored transaction again).

Each state has one step (`STEPS`). A step reads the payout, does its I/O
outside any transaction, then commits what `machine.decide` returned in one
transaction with the payout row locked and re-checked (`_locked`). Every
transaction that writes goes through `_write`, whose first statement is the
fence of the `payouts` role (core/leadership): a deposed leader that resumes
after a pause has its next write refused and the loop ends. What to do
between the I/O is decided in core/payouts/tracking.py. Restart safety
follows from the order of writes:
- a body is stored (with its nonce) before it is sent to the signer, and is
  resent unchanged until it expires (same request id → the same signature);
- a signed transaction is stored before it is broadcast; a payout found in
  `signed` after a crash is broadcast again from storage (the node answers
  "already known" or the tracker finds it mined) — it is never re-signed with
  another nonce, so it lands at most once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, assert_never

import asyncpg
import grpc

from core.chain.config import ChainConfig
from core.chain.config import Chains as Config
from core.chain.link import AdapterLink
from core.domain import assets
from core.invoices import lifecycle
from core.invoices import state as sm
from core.leadership.fence import Fence, FencedError
from core.payouts import gaps, ledger, machine, nonces, tracking, txbuilder
from core.payouts.config import PayoutsConfig
from core.payouts.machine import State
from core.payouts.payouts import as_machine, candidates_of, lock, save
from core.payouts.signer_client import SignerClient, SignerRefusal, body_digest, build_body
from core.telemetry.logs import REQUEST_ID, new_request_id
from kassa.chain.v1 import adapter_pb2, adapter_pb2_grpc

log = logging.getLogger("kassa.payouts")
PURPOSE = {
    "payout": "PAYOUT",
    "refund": "REFUND",
    "sweep": "SWEEP",
    "gas_funding": "GAS_FUNDING",
    "nonce_fill": "NONCE_FILL",
}
# Test-only fault points: the core kills itself (SIGKILL) right after the step
# named in KASSA_FAULT commits, so tests can prove restarts pay exactly once.
FAULT = os.environ.get("KASSA_FAULT", "")
# A broadcast candidate missing from the chain while its nonce is used: seen
# this many passes in a row before the payout is failed (guards races with mining).
NONCE_LOST_PASSES = 5
# A landed payout not yet final is looked at this often, and counts as
# reorged out once its transaction is missing this many looks in a row (a
# node behind the others, after a failover, does not know it yet either).
LANDED_POLL_S = 1.0
REORG_PASSES = 2
# A payout behind a missing earlier nonce is looked at this often, and the
# key's nonces reconciled with the chain at most this often per chain.
GAP_POLL_S = 1.0
GAP_RECONCILE_S = 5.0
# The hot key's nonce gaps on a chain are looked for at most this often, and
# only while a payout of it can still land (core/payouts/gaps.py).
GAP_CHECK_S = 1.0
# The payouts of the hot key whose nonces the gap decider needs: those that can
# still land at their nonce, and the nonce fills made within the wait ($4). One
# branch per partial index (payouts_active, payouts_landed_unfinal,
# payouts_platform): read every second, it never scans the whole table.
_NONCE_HOLDERS = """
SELECT id, nonce, state, kind, final_time, create_time FROM payouts
 WHERE state = ANY($3::text[]) AND chain = $1 AND key_id = $2 AND nonce IS NOT NULL
UNION
SELECT id, nonce, state, kind, final_time, create_time FROM payouts
 WHERE final_time IS NULL AND landed_tx_hash IS NOT NULL
   AND chain = $1 AND key_id = $2 AND nonce IS NOT NULL
UNION
SELECT id, nonce, state, kind, final_time, create_time FROM payouts
 WHERE merchant_id IS NULL AND create_time >= $4 AND kind = 'nonce_fill'
   AND chain = $1 AND key_id = $2 AND nonce IS NOT NULL
"""
_SEEN = {
    adapter_pb2.TRANSACTION_STATUS_SUCCEEDED: tracking.Seen.SUCCEEDED,
    adapter_pb2.TRANSACTION_STATUS_REVERTED: tracking.Seen.REVERTED,
    adapter_pb2.TRANSACTION_STATUS_PENDING: tracking.Seen.PENDING,
}


def _fault(point: str) -> None:
    if point == FAULT:
        log.warning("fault injected", extra={"point": point})
        os.kill(os.getpid(), signal.SIGKILL)


def _candidate(tx_hash: str, answer: adapter_pb2.GetTransactionResponse) -> tracking.Candidate:
    return tracking.Candidate(
        tx_hash,
        _SEEN.get(answer.status, tracking.Seen.UNKNOWN),
        int(answer.confirmations),
        int(answer.fee_paid or 0),
    )


async def _lock_refunded_invoice(step: Locked) -> None:
    """A refund's invoice is locked before the ledger's accounts, as the chain
    applier and CreateRefund lock them (invoice, then accounts): no deadlock."""
    if step.row["kind"] == "refund" and step.row["invoice_id"]:
        await lifecycle.lock_invoices(step.conn, [step.row["invoice_id"]])


@dataclass
class Locked:
    """One payout row locked in a transaction, as the machine sees it."""

    conn: asyncpg.Connection
    row: asyncpg.Record
    payout: machine.Payout
    now: datetime

    def decide(self, event: machine.Event) -> machine.Decision:
        return machine.decide(self.payout, event)

    async def save(
        self, decision: machine.Decision, fee_wei: int = 0, **columns: Any
    ) -> asyncpg.Record:
        return await save(self.conn, self.row, decision, self.now, fee_wei, **columns)


class PayoutWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        config: Config,
        payouts: PayoutsConfig,
        signer: SignerClient,
        clock: Callable[[], datetime],
    ) -> None:
        self.pool = pool
        self.config = config
        self.settings = payouts
        self.signer = signer
        self.clock = clock
        self.adapters = {
            c.id: adapter_pb2_grpc.ChainAdapterServiceStub(
                AdapterLink(c.adapter, c.adapter_name, config.adapters_tls).channel()
            )
            for c in config.chains
        }
        self.caps = tracking.FeeCaps(
            payouts.max_fee_per_gas_wei, payouts.max_priority_fee_per_gas_wei
        )
        self.timing = tracking.Timing(payouts.replace_after_s, payouts.rebroadcast_after_s)
        self.hot_address = ""
        self._nonce_lost: dict[str, int] = {}
        self._missing: dict[str, int] = {}
        self._reconciled_at: dict[str, float] = {}  # chain -> monotonic seconds
        self._gaps_checked_at: dict[str, float] = {}  # chain -> monotonic seconds
        self._gaps: dict[str, Mapping[int, datetime]] = {}  # chain -> gap -> first seen
        # Set while this replica leads `payouts` (core/leadership): checked first
        # in every transaction the worker writes (`_write`).
        self.fence: Fence | None = None

    # -- start ----------------------------------------------------------------
    async def reconcile(self) -> None:
        """Aligns the hot key's nonces with each chain (retried until both answer)."""
        self.hot_address = await self.signer.address_of(self.settings.hot_key_id)
        for chain in self.adapters:
            await self.reconcile_chain(chain)

    async def reconcile_chain(self, chain: str) -> None:
        """Aligns the hot key's nonces on `chain` with it: at start, and after a reorg
        or a gap, so no nonce the chain lacks blocks the payouts after it."""
        account = await self.adapters[chain].GetAccount(
            adapter_pb2.GetAccountRequest(address=self.hot_address), timeout=10
        )
        async with self._write() as conn:
            next_nonce = await nonces.reconcile(
                conn,
                chain,
                self.settings.hot_key_id,
                self.hot_address,
                account.latest_nonce,
                account.pending_nonce,
            )
        log.info(
            "payout nonces reconciled",
            extra={"chain": chain, "address": self.hot_address, "next_nonce": next_nonce},
        )

    async def _reconcile_soon(self, chain: str) -> None:
        now_s = asyncio.get_running_loop().time()
        if now_s - self._reconciled_at.get(chain, -GAP_RECONCILE_S) >= GAP_RECONCILE_S:
            self._reconciled_at[chain] = now_s
            await self.reconcile_chain(chain)

    async def run(self, fence: Fence | None = None) -> None:
        """Moves payouts forever; with a fence (this replica leads `payouts`), every
        write is fenced and a refusal ends the loop (and the elector resigns)."""
        self.fence = fence
        while True:
            try:
                await self.reconcile()
                break
            except (grpc.aio.AioRpcError, OSError) as exc:
                log.warning("payouts waiting for signer and adapters", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
        await self._step_loop()

    async def _step_loop(self) -> None:
        while True:
            try:
                await self.step()
            except (asyncio.CancelledError, FencedError):
                raise  # fenced: another replica leads payouts; this one stops writing
            except Exception:
                log.exception("payout pass failed")
            await asyncio.sleep(self.settings.poll_interval_s)

    async def step(self) -> None:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT id, state FROM payouts
                    WHERE next_attempt_time <= $2
                      AND (state = ANY($1::text[])
                           OR (final_time IS NULL AND landed_tx_hash IS NOT NULL
                               AND state = ANY($3::text[])))
                    ORDER BY create_time, id LIMIT 200""",
                list(machine.ACTIVE),
                self.clock(),
                sorted(machine.LANDED),
            )
        for r in rows:
            # One request id per step of a payout: its lines here, the signer's and the adapter's.
            REQUEST_ID.set(new_request_id())
            state = State(r["state"])
            try:
                await STEPS[state](self, r["id"])
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "payout step deferred",
                    extra={"payout": r["id"], "state": state.value, "error": exc.details()},
                )
                await self._later(r["id"], 2.0)

        await self._watch_gaps()

    # -- nonce gaps no payout will fill ------------------------------------------
    async def _watch_gaps(self) -> None:
        """Each chain's hot-key nonce gaps, at most every GAP_CHECK_S; an adapter that does
        not answer defers the look (its chain's payouts wait for it anyway)."""
        now_s = asyncio.get_running_loop().time()
        for chain in self.adapters:
            if now_s - self._gaps_checked_at.get(chain, -GAP_CHECK_S) < GAP_CHECK_S:
                continue
            self._gaps_checked_at[chain] = now_s
            try:
                await self._fill_gaps(chain)
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "nonce gaps not checked", extra={"chain": chain, "error": exc.details()}
                )

    async def _fill_gaps(self, chain: str) -> None:
        """Reads what `gaps.plan` needs, and fills what it says: a nonce of the hot key
        below its next one that no payout can still land at, once it stood the chain's
        `nonce_fill_after_s` (a transient gap closes on its own)."""
        key_id = self.settings.hot_key_id
        config = self.config.chain(chain)
        wait_s = config.nonce_fill_after_s if config else ChainConfig.nonce_fill_after_s
        now = self.clock()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _NONCE_HOLDERS,
                chain,
                key_id,
                sorted(gaps.MOVING),
                now - timedelta(seconds=wait_s),
            )
        holders = [
            gaps.Holder(
                int(r["nonce"]),
                State(r["state"]),
                finalized=r["final_time"] is not None,
                fill=r["kind"] == ledger.NONCE_FILL,
                create_time=r["create_time"],
            )
            for r in rows
        ]
        if not any(h.live for h in holders):
            self._gaps.pop(chain, None)  # nothing of the key can wait behind a gap
            return
        account = await self.adapters[chain].GetAccount(
            adapter_pb2.GetAccountRequest(address=self.hot_address), timeout=10
        )
        plan = gaps.plan(
            int(account.latest_nonce),
            int(account.pending_nonce),
            holders,
            self._gaps.get(chain, {}),
            now,
            wait_s,
        )
        self._gaps[chain] = plan.gaps
        for nonce in plan.new:
            log.warning(
                "nonce gap no payout holds: later payouts wait",
                extra={"chain": chain, "key_id": key_id, "nonce": nonce, "fill_after_s": wait_s},
            )
        for nonce in plan.fill:
            await self._fill(chain, nonce, (now - plan.gaps[nonce]).total_seconds())

    async def _fill(self, chain: str, nonce: int, waited_s: float) -> None:
        fees = await self._fees(chain)
        fill_id = await self.write_fill(chain, nonce, fees)
        if fill_id is None:
            return
        log.warning(
            "nonce gap filled: a 0-value transaction of the hot key to itself takes the nonce",
            extra={
                "chain": chain,
                "key_id": self.settings.hot_key_id,
                "nonce": nonce,
                "payout": fill_id,
                "waited_s": round(waited_s, 1),
            },
        )
        await self._on_signing(fill_id)

    async def write_fill(self, chain: str, nonce: int, fees: txbuilder.Fees) -> str | None:
        """The one writer of a nonce fill: in one fenced transaction, with the key's nonce
        row locked and the gap checked again under that lock, a nonce_fill payout at
        `nonce` moved to signing with its sign request (the hot key to its own address,
        value 0, no data). None, writing nothing, when a payout took the nonce since it
        was read or it was never allocated."""
        key_id = self.settings.hot_key_id
        native = assets.native(chain)
        assert self.hot_address, "the hot key's address is known (reconcile) before any fill"
        async with self._write() as conn:
            if not await nonces.take_gap(conn, chain, key_id, nonce):
                return None
            held = await conn.fetchval(
                """SELECT count(*) FROM payouts
                    WHERE chain = $1 AND key_id = $2 AND nonce = $3
                      AND (state = ANY($4::text[])
                           OR (final_time IS NULL AND landed_tx_hash IS NOT NULL))""",
                chain,
                key_id,
                nonce,
                sorted(gaps.MOVING),
            )
            if held:
                return None  # a payout took it since it was read: the gap closed by itself
            await ledger.ensure_platform(conn, native, chain)
            now = self.clock()
            row = await conn.fetchrow(
                """INSERT INTO payouts (id, merchant_id, kind, chain, asset, destination, amount,
                                        request_hash, state, key_id, hold_sources, hold_amounts,
                                        nonce, create_time, update_time, next_attempt_time)
                   VALUES ($1, NULL, $2, $3, $4, $5, 0, '', $6, $7, '{}', '{}', $8, $9, $9, $9)
                   RETURNING *""",
                secrets.token_hex(10),
                ledger.NONCE_FILL,
                chain,
                native,
                self.hot_address,
                State.CREATED,
                key_id,
                nonce,
                now,
            )
            assert row is not None
            decision = machine.decide(as_machine(row, ()), machine.NonceAllocated(nonce))
            await save(conn, row, decision, now, **await self._body(conn, row, nonce, fees))
            fill_id: str = row["id"]
        return fill_id

    async def _later(self, payout_id: str, seconds: float) -> None:
        """Schedules the payout's next look (not a state: no machine decision)."""
        async with self._write() as conn:
            await conn.execute(
                "UPDATE payouts SET next_attempt_time = $2 WHERE id = $1",
                payout_id,
                self.clock() + timedelta(seconds=seconds),
            )

    async def _row(self, payout_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
        assert row is not None, payout_id
        return row

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction that writes: fenced first, so a deposed leader's write
        is refused (FencedError, rolled back) before it touches a row."""
        async with self.pool.acquire() as conn, conn.transaction():
            if self.fence is not None:
                await self.fence.check(conn)
            yield conn

    @asynccontextmanager
    async def _locked(
        self, payout_id: str, states: frozenset[State], sign_digest: bytes | None = None
    ) -> AsyncIterator[Locked | None]:
        """The payout locked in a transaction if it is still in one of `states`
        (and still signing `sign_digest`, when given); None when another step or
        process moved it since it was read: the caller then does nothing."""
        async with self._write() as conn:
            row = await lock(conn, payout_id)
            if (
                row is None
                or State(row["state"]) not in states
                or (sign_digest is not None and row["sign_digest"] != sign_digest)
            ):
                yield None
                return
            payout = as_machine(row, await candidates_of(conn, payout_id))
            yield Locked(conn, row, payout, self.clock())

    # -- building sign requests --------------------------------------------
    async def _fees(self, chain: str, at_least: txbuilder.Fees | None = None) -> txbuilder.Fees:
        estimate = await self.adapters[chain].EstimateFees(
            adapter_pb2.EstimateFeesRequest(), timeout=10
        )
        return tracking.fees(
            int(estimate.base_fee_per_gas),
            int(estimate.max_priority_fee_per_gas),
            self.caps,
            at_least,
        )

    async def _fees_for(
        self, row: asyncpg.Record, at_least: txbuilder.Fees | None = None
    ) -> txbuilder.Fees:
        """A sweep's fees are the ones its gas funding paid for; others' follow the chain."""
        if row["fixed_max_fee"] is not None:
            return txbuilder.Fees(int(row["fixed_max_fee"]), int(row["fixed_tip"]))
        return await self._fees(row["chain"], at_least)

    async def _body(
        self, conn: asyncpg.Connection, row: asyncpg.Record, nonce: int, fees: txbuilder.Fees
    ) -> dict[str, Any]:
        """Columns of a fresh sign request for `row` at `nonce` with `fees`."""
        amount = int(row["amount"])
        # A gas funding names the deposit index it funds: the signer derives that address
        # itself and signs to no other.
        hd_index = None
        if row["kind"] == "gas_funding":
            hd_index = await conn.fetchval(
                "SELECT derivation_index FROM invoices WHERE id = $1", row["invoice_id"]
            )
        gas_limit = row["fixed_gas_limit"]  # a sweep's, as planned and funded
        call = txbuilder.call_for(
            row["asset"], row["destination"], amount, None if gas_limit is None else int(gas_limit)
        )
        unsigned = txbuilder.eip1559(assets.chain_number(row["chain"]), nonce, fees, call)
        now = self.clock()
        _, body = build_body(
            key_id=row["key_id"],
            chain=row["chain"],
            unsigned_transaction=unsigned,
            destination=row["destination"],
            asset=row["asset"],
            amount_base_units=amount,
            purpose=PURPOSE[row["kind"]],
            reference=(
                f"sweeps/{row['id']}"
                if row["merchant_id"] is None
                else f"merchants/{row['merchant_id']}/payouts/{row['id']}"
            ),
            issue_time=now,
            lifetime_s=self.settings.request_lifetime_s,
            destination_hd_index=None if hd_index is None else int(hd_index),
        )
        return {
            "sign_body": body,
            "sign_digest": body_digest(body),
            "sign_expire_time": now + timedelta(seconds=self.settings.request_lifetime_s),
            "sign_max_fee": fees.max_fee_per_gas_wei,
            "sign_tip": fees.max_priority_fee_per_gas_wei,
        }

    # -- created → signing -------------------------------------------------
    async def _on_created(self, payout_id: str) -> None:
        row = await self._row(payout_id)
        if row["funded_by"] is not None and not await self._funded(row):
            return
        fees = await self._fees_for(row)
        async with self._locked(payout_id, frozenset({State.CREATED})) as step:
            if step is None:
                return
            nonce = await nonces.allocate(step.conn, row["chain"], row["key_id"])
            decision = step.decide(machine.NonceAllocated(nonce))
            await step.save(decision, **await self._body(step.conn, step.row, nonce, fees))
        await self._on_signing(payout_id)

    async def _funded(self, row: asyncpg.Record) -> bool:
        """A sweep waits for its gas funding to confirm; cancelled if the funding failed."""
        async with self.pool.acquire() as conn:
            funding = await conn.fetchval(
                "SELECT state FROM payouts WHERE id = $1", row["funded_by"]
            )
        match State(funding):
            case State.CONFIRMED:
                return True
            case State.FAILED | State.CANCELLED:
                async with self._locked(row["id"], frozenset({State.CREATED})) as step:
                    if step is not None:
                        decision = step.decide(machine.Cancel())
                        await step.save(decision, failure_reason="GAS_FUNDING_FAILED")
                return False
            case (
                State.CREATED
                | State.SIGNING
                | State.WAITING_APPROVAL
                | State.SIGNED
                | State.BROADCAST
            ):
                await self._later(row["id"], 1.0)
                return False
            case unreachable:
                assert_never(unreachable)

    # -- signing → signed | waiting_approval ------------------------------
    async def _on_signing(self, payout_id: str) -> None:
        row = await self._row(payout_id)
        if State(row["state"]) is not State.SIGNING:
            return
        if tracking.expiring(row["sign_expire_time"], self.clock()):
            # Never sent successfully in its window, so never broadcast: a new body
            # for the same nonce is safe. Replacements keep outbidding the last candidate.
            async with self.pool.acquire() as conn:
                last = await self._last_fees(conn, payout_id)
            fees = await self._fees_for(row, last)
            async with self._locked(payout_id, frozenset({State.SIGNING})) as step:
                if step is None:
                    return
                nonce = int(step.row["nonce"])
                decision = step.decide(machine.Renewed(nonce))
                row = await step.save(
                    decision, **await self._body(step.conn, step.row, nonce, fees)
                )
        async with self.pool.acquire() as conn:
            approvals = [
                (r["approver_key_id"], bytes(r["signature"]))
                for r in await conn.fetch(
                    """SELECT approver_key_id, signature FROM payout_approvals
                        WHERE payout_id = $1 AND body_digest = $2 ORDER BY approver_key_id""",
                    payout_id,
                    row["sign_digest"],
                )
            ]
        try:
            response = await self.signer.sign(bytes(row["sign_body"]), approvals)
        except SignerRefusal as refusal:
            await self._refused(payout_id, row, refusal)
            return
        tx_hash = response.tx_hash.lower()
        async with self._locked(payout_id, frozenset({State.SIGNING}), row["sign_digest"]) as step:
            if step is None:
                return
            nonce = int(step.row["nonce"])
            decision = step.decide(machine.Signed(tx_hash, nonce))
            if decision.refusal is not None:
                log.error(
                    "signed transaction refused by the state machine",
                    extra={"payout": payout_id, "why": decision.refusal},
                )
                return
            # Stored before any broadcast: a crash from here on rebroadcasts these bytes.
            await step.conn.execute(
                """INSERT INTO payout_transactions (tx_hash, payout_id, nonce, max_fee_per_gas,
                                                    max_priority_fee_per_gas, raw, create_time)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                tx_hash,
                payout_id,
                nonce,
                int(step.row["sign_max_fee"]),
                int(step.row["sign_tip"]),
                bytes(response.signed_transaction),
                self.clock(),
            )
            await step.save(decision)
        log.info("payout signed", extra={"payout": payout_id, "tx_hash": tx_hash})
        _fault("sweep-after-sign" if row["kind"] == "sweep" else "payout-after-sign")
        await self._on_signed(payout_id)

    async def _refused(self, payout_id: str, row: asyncpg.Record, refusal: SignerRefusal) -> None:
        log.warning(
            "signer refused",
            extra={"payout": payout_id, "reason": refusal.reason, "detail": refusal.message},
        )
        plan = tracking.on_refusal(refusal.reason, refusal.is_policy, refusal.metadata)
        if plan.renew_body:
            # REQUEST_EXPIRED and the like: the body expires now, so the next
            # pass renews it through the machine (`Renewed`).
            async with self._write() as conn:
                await conn.execute(
                    "UPDATE payouts SET sign_expire_time = least(sign_expire_time, $2) WHERE id = $1",
                    payout_id,
                    self.clock(),
                )
            return
        async with self._locked(payout_id, frozenset({State.SIGNING}), row["sign_digest"]) as step:
            if step is None:
                return
            decision = step.decide(machine.SignRefused(refusal.reason))
            columns: dict[str, Any] = {
                "next_attempt_time": self.clock() + timedelta(seconds=plan.retry_after_s)
            }
            if refusal.reason == tracking.APPROVALS_REQUIRED:
                columns["required_approvers"] = list(plan.approvers)
                columns["approval_threshold"] = plan.approval_threshold
            if plan.forget_approvals:
                await step.conn.execute(
                    "DELETE FROM payout_approvals WHERE payout_id = $1 AND body_digest = $2",
                    payout_id,
                    step.row["sign_digest"],
                )
            fresh = await step.save(decision, **columns)
            if (
                fresh["kind"] == ledger.NONCE_FILL
                and State(fresh["state"]) is State.WAITING_APPROVAL
            ):
                # Nobody approves a fill: it is cancelled (its nonce went back with the
                # refusal) and the gap is filled anew after another wait (gaps.plan).
                cancel = machine.decide(as_machine(fresh, step.payout.candidates), machine.Cancel())
                # The nonce it was made for stays on the row (the machine clears a
                # cancelled payout's): the decider waits a whole wait before another fill.
                await save(
                    step.conn,
                    fresh,
                    cancel,
                    step.now,
                    failure_reason=refusal.reason,
                    nonce=step.row["nonce"],
                )
                log.error(
                    "nonce fill refused by the signer: cancelled (check the signer's "
                    "NONCE_FILL rule)",
                    extra={"payout": payout_id, "reason": refusal.reason},
                )

    # -- waiting_approval → signing ----------------------------------------
    async def _on_waiting_approval(self, payout_id: str) -> None:
        row = await self._row(payout_id)
        async with self.pool.acquire() as conn:
            have = await conn.fetchval(
                "SELECT count(*) FROM payout_approvals WHERE payout_id = $1 AND body_digest = $2",
                payout_id,
                row["sign_digest"],
            )
        plan = tracking.approval_step(
            row["waiting_reason"],
            int(have),
            row["approval_threshold"],
            row["sign_expire_time"],
            self.clock(),
        )
        if plan is tracking.ApprovalStep.WAIT:
            await self._later(payout_id, tracking.APPROVAL_POLL_S)
            return
        fees = await self._fees_for(row)
        waiting = frozenset({State.WAITING_APPROVAL})
        async with self._locked(payout_id, waiting, row["sign_digest"]) as step:
            if step is None:
                return
            chain, key_id = step.row["chain"], step.row["key_id"]
            match plan:
                case tracking.ApprovalStep.SIGN | tracking.ApprovalStep.RENEW:
                    nonce = int(step.row["nonce"])
                    if plan is tracking.ApprovalStep.SIGN and await nonces.claim(
                        step.conn, chain, key_id, nonce
                    ):
                        # The approved body as it is: its nonce is ours again.
                        decision = step.decide(machine.Approved(nonce))
                        await step.save(decision, next_attempt_time=self.clock())
                        return
                    # Expired or its nonce was reused: a fresh body for approvers to
                    # sign, at the nonce the next allocation would give (not taken
                    # until approved).
                    nonce = await nonces.peek(step.conn, chain, key_id)
                    decision = step.decide(machine.Renewed(nonce))
                    await step.save(decision, **await self._body(step.conn, step.row, nonce, fees))
                case tracking.ApprovalStep.RETRY:
                    # Other policy refusals: try again (the policy may have been reloaded).
                    nonce = await nonces.allocate(step.conn, chain, key_id)
                    decision = step.decide(machine.Approved(nonce))
                    await step.save(decision, **await self._body(step.conn, step.row, nonce, fees))
                case tracking.ApprovalStep.WAIT:
                    raise AssertionError("handled before the lock")
                case unreachable:
                    assert_never(unreachable)

    # -- signed → broadcast ------------------------------------------------
    async def _on_signed(self, payout_id: str) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
            assert row is not None
            if State(row["state"]) is not State.SIGNED:
                return
            tx = await conn.fetchrow(
                """SELECT * FROM payout_transactions WHERE payout_id = $1
                    ORDER BY create_time DESC, tx_hash LIMIT 1""",
                payout_id,
            )
        assert tx is not None
        await self._broadcast(row["chain"], tx)
        _fault("payout-after-broadcast")
        async with self._locked(payout_id, frozenset({State.SIGNED})) as step:
            if step is None:
                return
            await step.conn.execute(
                "UPDATE payout_transactions SET broadcast_time = $2 WHERE tx_hash = $1",
                tx["tx_hash"],
                self.clock(),
            )
            await step.save(step.decide(machine.Broadcasted()))

    async def _broadcast(self, chain: str, tx: asyncpg.Record) -> None:
        try:
            answer = await self.adapters[chain].BroadcastTransaction(
                adapter_pb2.BroadcastTransactionRequest(raw_transaction=bytes(tx["raw"])),
                timeout=15,
            )
            log.info(
                "payout broadcast",
                extra={"tx_hash": tx["tx_hash"], "already_known": answer.already_known},
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise  # adapter down: retried later from the stored bytes
            # Rejected (nonce already used, underpriced, no funds for gas): the
            # tracker decides from what the chain shows, never by re-signing anew.
            log.warning(
                "broadcast rejected", extra={"tx_hash": tx["tx_hash"], "error": exc.details()}
            )

    # -- broadcast → confirmed | failed (or a replacement) --------------------
    async def _on_broadcast(self, payout_id: str) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
            txs = await conn.fetch(
                "SELECT * FROM payout_transactions WHERE payout_id = $1 ORDER BY create_time, tx_hash",
                payout_id,
            )
        assert row is not None
        if State(row["state"]) is not State.BROADCAST or not txs:
            return
        adapter = self.adapters[row["chain"]]
        chain = self.config.chain(row["chain"])
        candidates = [
            _candidate(
                tx["tx_hash"],
                await adapter.GetTransaction(
                    adapter_pb2.GetTransactionRequest(tx_hash=tx["tx_hash"]), timeout=10
                ),
            )
            for tx in txs
        ]
        account = await adapter.GetAccount(
            adapter_pb2.GetAccountRequest(address=row["source_address"] or self.hot_address),
            timeout=10,
        )
        newest = txs[-1]
        track = tracking.track_broadcast(
            candidates,
            confirmations_needed=chain.confirmations if chain else 1,
            nonce=int(row["nonce"]),
            chain_latest_nonce=int(account.latest_nonce),
            sent_at=newest["broadcast_time"] or newest["create_time"],
            now=self.clock(),
            timing=self.timing,
        )
        if track.move is not tracking.Move.NONCE_USED:
            self._nonce_lost.pop(payout_id, None)
        match track.move:
            case tracking.Move.WAIT:
                pass
            case tracking.Move.LAND:
                assert track.landed is not None
                landed = track.landed
                await self._land(
                    payout_id,
                    landed.tx_hash,
                    landed.seen is tracking.Seen.SUCCEEDED,
                    landed.fee_paid_wei,
                )
            case tracking.Move.NONCE_USED:
                # The nonce is used on chain, by none of our candidates.
                self._nonce_lost[payout_id] = self._nonce_lost.get(payout_id, 0) + 1
                if self._nonce_lost[payout_id] >= NONCE_LOST_PASSES:
                    await self._nonce_consumed(payout_id)
            case tracking.Move.REBROADCAST:
                for tx in txs:
                    await self._broadcast(row["chain"], tx)
                await self._touch(newest["tx_hash"])
            case tracking.Move.GAP:
                log.warning(
                    "payout waits on an earlier nonce missing on chain",
                    extra={"payout": payout_id, "nonce": int(row["nonce"])},
                )
                if row["key_id"] == self.settings.hot_key_id:
                    await self._reconcile_soon(row["chain"])
                # The replacement timer restarts: a fee bump is for a stuck
                # transaction, not for one waiting its turn.
                await self._touch(newest["tx_hash"])
                await self._later(payout_id, GAP_POLL_S)
            case tracking.Move.REPLACE:
                await self._replace(payout_id, newest)
            case unreachable:
                assert_never(unreachable)

    async def _touch(self, tx_hash: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                "UPDATE payout_transactions SET broadcast_time = $2 WHERE tx_hash = $1",
                tx_hash,
                self.clock(),
            )

    async def _replace(self, payout_id: str, newest: asyncpg.Record) -> None:
        last = txbuilder.Fees(
            int(newest["max_fee_per_gas"]), int(newest["max_priority_fee_per_gas"])
        )
        row = await self._row(payout_id)
        if not tracking.can_bump(last, self.caps, fixed=row["fixed_max_fee"] is not None):
            log.warning("stuck payout at the fee cap: waiting", extra={"payout": payout_id})
            await self._touch(newest["tx_hash"])
            return
        fees = await self._fees_for(row, last)
        async with self._locked(payout_id, frozenset({State.BROADCAST})) as step:
            if step is None:
                return
            decision = step.decide(machine.Replace())
            # Same nonce, same intent, higher fees: whichever candidate lands wins.
            await step.save(
                decision, **await self._body(step.conn, step.row, int(step.row["nonce"]), fees)
            )
        log.info(
            "replacing stuck payout transaction",
            extra={"payout": payout_id, "old": newest["tx_hash"]},
        )
        await self._on_signing(payout_id)

    async def _nonce_consumed(self, payout_id: str) -> None:
        async with self._locked(payout_id, frozenset({State.BROADCAST})) as step:
            if step is None:
                return
            decision = step.decide(machine.NonceLost())
            await step.conn.execute(
                "UPDATE payout_transactions SET status = 'dropped' WHERE payout_id = $1", payout_id
            )
            await step.save(decision)
        self._nonce_lost.pop(payout_id, None)

    async def _land(self, payout_id: str, tx_hash: str, succeeded: bool, fee_wei: int) -> None:
        async with self._locked(payout_id, frozenset({State.BROADCAST})) as step:
            if step is None:
                return
            decision = step.decide(machine.Landed(tx_hash, succeeded))
            if decision.refusal is not None:
                log.error("landing refused", extra={"payout": payout_id, "why": decision.refusal})
                return
            await step.conn.execute(
                """UPDATE payout_transactions
                      SET status = CASE WHEN tx_hash = $2 THEN 'landed' ELSE 'dropped' END
                    WHERE payout_id = $1""",
                payout_id,
                tx_hash,
            )
            await _lock_refunded_invoice(step)
            fresh = await step.save(decision, fee_wei=fee_wei, network_fee=fee_wei)
            await self._refund_outcome(step, fresh, decision)
        log.info(
            "payout landed",
            extra={
                "payout": payout_id,
                "tx_hash": tx_hash,
                "succeeded": succeeded,
                "fee_wei": fee_wei,
            },
        )

    async def _refund_outcome(
        self, step: Locked, fresh: asyncpg.Record, decision: machine.Decision
    ) -> None:
        """The invoice counts a refund while its transaction stands on the chain:
        at each successful landing (the first, or one after a reorg) it counts it,
        and a reorg that removes a landing that paid takes it back (the amount is
        in progress again, refundable again once the refund fails)."""
        if fresh["kind"] != "refund" or not fresh["invoice_id"]:
            return
        event: sm.Event
        if decision.payout.state is State.CONFIRMED and machine.Hold.POST in (
            decision.hold,
            decision.rebook,
        ):
            event = sm.RefundSettled(int(fresh["amount"]))
        elif decision.undo is machine.Hold.POST:
            event = sm.RefundReversed(int(fresh["amount"]))
        else:
            return
        invoices = await lifecycle.lock_invoices(step.conn, [fresh["invoice_id"]])
        applied = await lifecycle.apply(step.conn, invoices, {fresh["invoice_id"]: event}, step.now)
        refusal = applied.decisions[fresh["invoice_id"]].refusal
        if refusal is not None:
            # Money moved on chain either way; the refund stands and the mismatch is loud.
            log.error(
                "refund outcome not applied to its invoice",
                extra={
                    "payout": fresh["id"],
                    "event": type(event).__name__,
                    "refusal": str(refusal),
                },
            )

    # -- confirmed | failed → final, or back to broadcast after a reorg ----------
    async def _on_landed(self, payout_id: str) -> None:
        row = await self._row(payout_id)
        if State(row["state"]) not in machine.LANDED or row["final_time"] is not None:
            return
        tx_hash = row["landed_tx_hash"]
        answer = await self.adapters[row["chain"]].GetTransaction(
            adapter_pb2.GetTransactionRequest(tx_hash=tx_hash), timeout=10
        )
        chain = self.config.chain(row["chain"])
        depth = chain.finality_blocks if chain else 1
        settle = tracking.track_landed(_candidate(tx_hash, answer), depth)
        if settle is not tracking.Settle.REORGED:
            self._missing.pop(payout_id, None)
        match settle:
            case tracking.Settle.WAIT:
                await self._later(payout_id, LANDED_POLL_S)
            case tracking.Settle.FINALIZE:
                async with self._locked(payout_id, machine.LANDED) as step:
                    if step is not None:
                        await step.save(step.decide(machine.Finalized()))
            case tracking.Settle.REORGED:
                self._missing[payout_id] = self._missing.get(payout_id, 0) + 1
                if self._missing[payout_id] < REORG_PASSES:
                    await self._later(payout_id, LANDED_POLL_S)
                    return
                self._missing.pop(payout_id, None)
                await self._reorged(payout_id, tx_hash)
            case unreachable:
                assert_never(unreachable)

    async def _reorged(self, payout_id: str, tx_hash: str) -> None:
        async with self._locked(payout_id, machine.LANDED) as step:
            if step is None or step.row["landed_tx_hash"] != tx_hash:
                return
            decision = step.decide(machine.Reorged())
            await step.conn.execute(
                "UPDATE payout_transactions SET status = 'candidate' WHERE payout_id = $1",
                payout_id,
            )
            await _lock_refunded_invoice(step)
            fresh = await step.save(decision, network_fee=None)
            await self._refund_outcome(step, fresh, decision)
            tx = await step.conn.fetchrow(
                "SELECT * FROM payout_transactions WHERE tx_hash = $1", tx_hash
            )
            chain, key_id = step.row["chain"], step.row["key_id"]
        log.warning(
            "landed payout reorged out: sending its signed transaction again",
            extra={"payout": payout_id, "tx_hash": tx_hash, "reorgs": decision.payout.reorgs},
        )
        # The same bytes, the same nonce: it can land at most once whatever follows.
        assert tx is not None
        await self._broadcast(chain, tx)
        await self._touch(tx_hash)
        if key_id == self.settings.hot_key_id:
            await self.reconcile_chain(chain)

    async def _last_fees(self, conn: asyncpg.Connection, payout_id: str) -> txbuilder.Fees | None:
        last = await conn.fetchrow(
            """SELECT max_fee_per_gas, max_priority_fee_per_gas FROM payout_transactions
                WHERE payout_id = $1 ORDER BY create_time DESC, tx_hash LIMIT 1""",
            payout_id,
        )
        if last is None:
            return None
        return txbuilder.Fees(int(last["max_fee_per_gas"]), int(last["max_priority_fee_per_gas"]))


Step = Callable[[PayoutWorker, str], Awaitable[None]]
# One step per state the worker moves (cancelled payouts are left alone).
STEPS: Mapping[State, Step] = {
    State.CREATED: PayoutWorker._on_created,
    State.SIGNING: PayoutWorker._on_signing,
    State.WAITING_APPROVAL: PayoutWorker._on_waiting_approval,
    State.SIGNED: PayoutWorker._on_signed,
    State.BROADCAST: PayoutWorker._on_broadcast,
    State.CONFIRMED: PayoutWorker._on_landed,
    State.FAILED: PayoutWorker._on_landed,
}
assert set(STEPS) == set(machine.ACTIVE) | machine.LANDED
