"""Moves payouts forward: allocate a nonce and build the sign request, sign
through the signer, store the signed transaction, broadcast it, track it to
its confirmations, replace it when stuck, finalize it in the ledger.

Every step reads the payout, does its I/O outside any transaction, then
commits what `machine.decide` returned in one transaction with the payout row
locked. Restart safety follows from the order of writes:
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
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import grpc

from core import lifecycle
from core.chain.config import Chains as Config
from core.domain import invoice_state as sm
from core.payouts import machine, nonces, txbuilder
from core.payouts.config import PayoutsConfig
from core.payouts.payouts import as_machine, candidates_of, lock, save
from core.payouts.signer_client import SignerClient, SignerRefusal, body_digest, build_body
from kassa.chain.v1 import adapter_pb2, adapter_pb2_grpc
from telemetry.logs import REQUEST_ID, new_request_id
from telemetry.metrics import RequestIdClient

log = logging.getLogger("kassa.payouts")
ACTIVE = ("created", "signing", "waiting_approval", "signed", "broadcast")
PURPOSE = {"payout": "PAYOUT", "refund": "REFUND", "sweep": "SWEEP", "gas_funding": "GAS_FUNDING"}
# Test-only fault points: the core kills itself (SIGKILL) right after the step
# named in KASSA_FAULT commits, so tests can prove restarts pay exactly once.
FAULT = os.environ.get("KASSA_FAULT", "")
# A broadcast candidate missing from the chain while its nonce is used: seen
# this many passes in a row before the payout is failed (guards races with mining).
NONCE_LOST_PASSES = 5


def _fault(point: str) -> None:
    if point == FAULT:
        log.warning("fault injected", extra={"point": point})
        os.kill(os.getpid(), signal.SIGKILL)


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
                grpc.aio.insecure_channel(c.adapter, interceptors=[RequestIdClient()])
            )
            for c in config.chains
        }
        self.hot_address = ""
        self._nonce_lost: dict[str, int] = {}

    # -- start ----------------------------------------------------------------
    async def reconcile(self) -> None:
        """Aligns the hot key's nonces with each chain (retried until both answer)."""
        self.hot_address = await self.signer.address_of(self.settings.hot_key_id)
        for chain, adapter in self.adapters.items():
            account = await adapter.GetAccount(
                adapter_pb2.GetAccountRequest(address=self.hot_address), timeout=10
            )
            async with self.pool.acquire() as conn, conn.transaction():
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

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile()
                break
            except (grpc.aio.AioRpcError, OSError) as exc:
                log.warning("payouts waiting for signer and adapters", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payout pass failed")
            await asyncio.sleep(self.settings.poll_interval_s)

    async def step(self) -> None:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT id, state FROM payouts
                    WHERE state = ANY($1::text[]) AND next_attempt_time <= $2
                    ORDER BY create_time, id LIMIT 200""",
                list(ACTIVE),
                self.clock(),
            )
        for r in rows:
            # One request id per step of a payout: its lines here, the signer's and the adapter's.
            REQUEST_ID.set(new_request_id())
            try:
                await getattr(self, f"_on_{r['state']}")(r["id"])
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "payout step deferred",
                    extra={"payout": r["id"], "state": r["state"], "error": exc.details()},
                )
                await self._later(r["id"], 2.0)

    async def _later(self, payout_id: str, seconds: float) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE payouts SET next_attempt_time = $2 WHERE id = $1",
                payout_id,
                self.clock() + timedelta(seconds=seconds),
            )

    # -- building sign requests --------------------------------------------
    async def _fees(self, chain: str, at_least: txbuilder.Fees | None = None) -> txbuilder.Fees:
        estimate = await self.adapters[chain].EstimateFees(
            adapter_pb2.EstimateFeesRequest(), timeout=10
        )
        fees = txbuilder.capped_fees(
            int(estimate.base_fee_per_gas),
            int(estimate.max_priority_fee_per_gas),
            self.settings.max_fee_per_gas_wei,
            self.settings.max_priority_fee_per_gas_wei,
        )
        if at_least is not None:  # a replacement: +12% on both, within the caps
            fees = txbuilder.Fees(
                min(
                    max(fees.max_fee_per_gas_wei, machine.bumped(at_least.max_fee_per_gas_wei)),
                    self.settings.max_fee_per_gas_wei,
                ),
                min(
                    max(
                        fees.max_priority_fee_per_gas_wei,
                        machine.bumped(at_least.max_priority_fee_per_gas_wei),
                    ),
                    self.settings.max_priority_fee_per_gas_wei,
                ),
            )
        return fees

    async def _fees_for(
        self, row: asyncpg.Record, at_least: txbuilder.Fees | None = None
    ) -> txbuilder.Fees:
        """A sweep's fees are the ones its gas funding paid for; others' follow the chain."""
        if row["fixed_max_fee"] is not None:
            return txbuilder.Fees(int(row["fixed_max_fee"]), int(row["fixed_tip"]))
        return await self._fees(row["chain"], at_least)

    def _body(self, row: asyncpg.Record, nonce: int, fees: txbuilder.Fees) -> dict[str, Any]:
        """Columns of a fresh sign request for `row` at `nonce` with `fees`."""
        amount = int(row["amount"])
        call = txbuilder.call_for(row["asset"], row["destination"], amount)
        unsigned = txbuilder.eip1559(txbuilder.chain_number(row["chain"]), nonce, fees, call)
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
        )
        return {
            "sign_body": body,
            "sign_digest": body_digest(body),
            "sign_expire_time": now + timedelta(seconds=self.settings.request_lifetime_s),
            "sign_max_fee": fees.max_fee_per_gas_wei,
            "sign_tip": fees.max_priority_fee_per_gas_wei,
        }

    async def _last_fees(self, conn: asyncpg.Connection, payout_id: str) -> txbuilder.Fees | None:
        last = await conn.fetchrow(
            """SELECT max_fee_per_gas, max_priority_fee_per_gas FROM payout_transactions
                WHERE payout_id = $1 ORDER BY create_time DESC, tx_hash LIMIT 1""",
            payout_id,
        )
        if last is None:
            return None
        return txbuilder.Fees(int(last["max_fee_per_gas"]), int(last["max_priority_fee_per_gas"]))

    # -- created → signing -------------------------------------------------
    async def _on_created(self, payout_id: str) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
        assert row is not None
        if row["funded_by"] is not None and not await self._funded(row):
            return
        fees = await self._fees_for(row)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock(conn, payout_id)
            if row is None or row["state"] != "created":
                return
            nonce = await nonces.allocate(conn, row["chain"], row["key_id"])
            decision = machine.decide(as_machine(row, ()), machine.NonceAllocated(nonce))
            await save(conn, row, decision, self.clock(), **self._body(row, nonce, fees))
        await self._on_signing(payout_id)

    async def _funded(self, row: asyncpg.Record) -> bool:
        """A sweep waits for its gas funding to confirm; cancelled if the funding failed."""
        async with self.pool.acquire() as conn:
            funding = await conn.fetchval(
                "SELECT state FROM payouts WHERE id = $1", row["funded_by"]
            )
        if funding == "confirmed":
            return True
        if funding in ("failed", "cancelled"):
            async with self.pool.acquire() as conn, conn.transaction():
                current = await lock(conn, row["id"])
                if current is not None and current["state"] == "created":
                    decision = machine.decide(as_machine(current, ()), machine.Cancel())
                    await save(
                        conn, current, decision, self.clock(), failure_reason="GAS_FUNDING_FAILED"
                    )
            return False
        await self._later(row["id"], 1.0)
        return False

    # -- signing → signed | waiting_approval ------------------------------
    async def _on_signing(self, payout_id: str) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
            assert row is not None
            if row["state"] != "signing":
                return
            if row["sign_expire_time"] <= self.clock() + timedelta(seconds=3):
                # Never sent successfully in its window, so never broadcast: a new body
                # for the same nonce is safe. Replacements keep outbidding the last candidate.
                fees = await self._fees_for(row, await self._last_fees(conn, payout_id))
                async with conn.transaction():
                    row = await lock(conn, payout_id)
                    assert row is not None
                    if row["state"] != "signing":
                        return
                    body = self._body(row, int(row["nonce"]), fees)
                    names = list(body)
                    sets = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
                    row = await conn.fetchrow(
                        f"UPDATE payouts SET {sets} WHERE id = $1 RETURNING *",  # noqa: S608 (column names are ours)
                        payout_id,
                        *body.values(),
                    )
                    assert row is not None
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
        async with self.pool.acquire() as conn, conn.transaction():
            current = await lock(conn, payout_id)
            if (
                current is None
                or current["state"] != "signing"
                or current["sign_digest"] != row["sign_digest"]
            ):
                return
            tx_hash = response.tx_hash.lower()
            decision = machine.decide(
                as_machine(current, await candidates_of(conn, payout_id)),
                machine.Signed(tx_hash, int(current["nonce"])),
            )
            if decision.refusal is not None:
                log.error(
                    "signed transaction refused by the state machine",
                    extra={"payout": payout_id, "why": decision.refusal},
                )
                return
            # Stored before any broadcast: a crash from here on rebroadcasts these bytes.
            await conn.execute(
                """INSERT INTO payout_transactions (tx_hash, payout_id, nonce, max_fee_per_gas,
                                                    max_priority_fee_per_gas, raw, create_time)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                tx_hash,
                payout_id,
                int(current["nonce"]),
                int(current["sign_max_fee"]),
                int(current["sign_tip"]),
                bytes(response.signed_transaction),
                self.clock(),
            )
            await save(conn, current, decision, self.clock())
        log.info("payout signed", extra={"payout": payout_id, "tx_hash": tx_hash})
        _fault("sweep-after-sign" if current["kind"] == "sweep" else "payout-after-sign")
        await self._on_signed(payout_id)

    async def _refused(self, payout_id: str, row: asyncpg.Record, refusal: SignerRefusal) -> None:
        log.warning(
            "signer refused",
            extra={"payout": payout_id, "reason": refusal.reason, "detail": refusal.message},
        )
        if not refusal.is_policy:
            # REQUEST_EXPIRED and the like: a fresh body on the next pass.
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE payouts SET sign_expire_time = least(sign_expire_time, $2) WHERE id = $1",
                    payout_id,
                    self.clock(),
                )
            return
        async with self.pool.acquire() as conn, conn.transaction():
            current = await lock(conn, payout_id)
            if (
                current is None
                or current["state"] != "signing"
                or current["sign_digest"] != row["sign_digest"]
            ):
                return
            decision = machine.decide(
                as_machine(current, await candidates_of(conn, payout_id)),
                machine.SignRefused(refusal.reason),
            )
            columns: dict[str, Any] = {
                # Approvals are checked (and an expiring body renewed) every second;
                # other refusals wait for a policy change (SIGHUP) and are retried.
                "next_attempt_time": self.clock()
                + timedelta(seconds=1 if refusal.reason == "APPROVALS_REQUIRED" else 30),
            }
            if refusal.reason == "APPROVALS_REQUIRED":
                approvers = refusal.metadata.get("approvers", "")
                columns["required_approvers"] = [
                    a for a in approvers.replace(" ", "").split(",") if a
                ]
                columns["approval_threshold"] = int(refusal.metadata.get("threshold", "0") or 0)
            if refusal.reason == "APPROVAL_INVALID":
                # A bad signature would poison every retry: approvers sign again.
                await conn.execute(
                    "DELETE FROM payout_approvals WHERE payout_id = $1 AND body_digest = $2",
                    payout_id,
                    current["sign_digest"],
                )
            await save(conn, current, decision, self.clock(), **columns)

    # -- waiting_approval → signing ----------------------------------------
    async def _on_waiting_approval(self, payout_id: str) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
            assert row is not None
            have = await conn.fetchval(
                "SELECT count(*) FROM payout_approvals WHERE payout_id = $1 AND body_digest = $2",
                payout_id,
                row["sign_digest"],
            )
        expired = row["sign_expire_time"] <= self.clock() + timedelta(seconds=3)
        ready = (
            row["waiting_reason"] == "APPROVALS_REQUIRED"
            and have >= max(row["approval_threshold"], 1)
            and not expired
        )
        if row["waiting_reason"] == "APPROVALS_REQUIRED" and not ready and not expired:
            await self._later(payout_id, 1.0)
            return
        fees = await self._fees_for(row)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock(conn, payout_id)
            if row is None or row["state"] != "waiting_approval":
                return
            if ready and await nonces.claim(conn, row["chain"], row["key_id"], int(row["nonce"])):
                # The approved body as it is: its nonce is ours again.
                decision = machine.decide(as_machine(row, ()), machine.Approved(int(row["nonce"])))
                await save(conn, row, decision, self.clock(), next_attempt_time=self.clock())
                return
            if row["waiting_reason"] == "APPROVALS_REQUIRED":
                # Expired or its nonce was reused: a fresh body for approvers to sign,
                # at the nonce the next allocation would give (not taken until approved).
                nonce = await nonces.peek(conn, row["chain"], row["key_id"])
                body = self._body(row, nonce, fees)
                names = ["nonce", *body]
                sets = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
                await conn.execute(
                    f"UPDATE payouts SET {sets} WHERE id = $1",  # noqa: S608 (column names are ours)
                    payout_id,
                    nonce,
                    *body.values(),
                )
                return
            # Other policy refusals: try again (the policy may have been reloaded).
            nonce = await nonces.allocate(conn, row["chain"], row["key_id"])
            decision = machine.decide(as_machine(row, ()), machine.Approved(nonce))
            await save(conn, row, decision, self.clock(), **self._body(row, nonce, fees))

    # -- signed → broadcast ------------------------------------------------
    async def _on_signed(self, payout_id: str) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
            assert row is not None
            if row["state"] != "signed":
                return
            tx = await conn.fetchrow(
                """SELECT * FROM payout_transactions WHERE payout_id = $1
                    ORDER BY create_time DESC, tx_hash LIMIT 1""",
                payout_id,
            )
        assert tx is not None
        await self._broadcast(row["chain"], tx)
        _fault("payout-after-broadcast")
        async with self.pool.acquire() as conn, conn.transaction():
            current = await lock(conn, payout_id)
            if current is None or current["state"] != "signed":
                return
            await conn.execute(
                "UPDATE payout_transactions SET broadcast_time = $2 WHERE tx_hash = $1",
                tx["tx_hash"],
                self.clock(),
            )
            decision = machine.decide(
                as_machine(current, await candidates_of(conn, payout_id)), machine.Broadcasted()
            )
            await save(conn, current, decision, self.clock())

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
        if row["state"] != "broadcast" or not txs:
            return
        adapter = self.adapters[row["chain"]]
        chain = self.config.chain(row["chain"])
        needed = chain.confirmations if chain else 1
        statuses = {}
        for tx in txs:
            statuses[tx["tx_hash"]] = await adapter.GetTransaction(
                adapter_pb2.GetTransactionRequest(tx_hash=tx["tx_hash"]), timeout=10
            )
        mined = [
            (h, s)
            for h, s in statuses.items()
            if s.status
            in (adapter_pb2.TRANSACTION_STATUS_SUCCEEDED, adapter_pb2.TRANSACTION_STATUS_REVERTED)
        ]
        if mined:
            tx_hash, status = mined[0]
            if status.confirmations >= needed:
                await self._finalize(
                    payout_id,
                    tx_hash,
                    status.status == adapter_pb2.TRANSACTION_STATUS_SUCCEEDED,
                    int(status.fee_paid or 0),
                )
            return
        newest = txs[-1]
        now = self.clock()
        sent_at = newest["broadcast_time"] or newest["create_time"]
        if all(s.status == adapter_pb2.TRANSACTION_STATUS_UNKNOWN for s in statuses.values()):
            account = await adapter.GetAccount(
                adapter_pb2.GetAccountRequest(address=row["source_address"] or self.hot_address),
                timeout=10,
            )
            if account.latest_nonce > int(row["nonce"]):
                # The nonce is used on chain, by none of our candidates (checked above).
                self._nonce_lost[payout_id] = self._nonce_lost.get(payout_id, 0) + 1
                if self._nonce_lost[payout_id] >= NONCE_LOST_PASSES:
                    await self._nonce_consumed(payout_id)
                return
            self._nonce_lost.pop(payout_id, None)
            if now - sent_at >= timedelta(seconds=self.settings.rebroadcast_after_s):
                # Dropped by the node (evicted, or our own node restarted): send again.
                for tx in txs:
                    await self._broadcast(row["chain"], tx)
                await self._touch(newest["tx_hash"])
            return
        if now - sent_at >= timedelta(seconds=self.settings.replace_after_s):
            await self._replace(payout_id, newest)

    async def _touch(self, tx_hash: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE payout_transactions SET broadcast_time = $2 WHERE tx_hash = $1",
                tx_hash,
                self.clock(),
            )

    async def _replace(self, payout_id: str, newest: asyncpg.Record) -> None:
        last = txbuilder.Fees(
            int(newest["max_fee_per_gas"]), int(newest["max_priority_fee_per_gas"])
        )
        # A sweep spends the gas it was funded with, no more: it waits for the base fee.
        if await self._fixed(payout_id) or (
            machine.bumped(last.max_fee_per_gas_wei) > self.settings.max_fee_per_gas_wei
            or machine.bumped(last.max_priority_fee_per_gas_wei)
            > self.settings.max_priority_fee_per_gas_wei
        ):
            log.warning("stuck payout at the fee cap: waiting", extra={"payout": payout_id})
            await self._touch(newest["tx_hash"])
            return
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
        assert row is not None
        fees = await self._fees_for(row, last)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock(conn, payout_id)
            if row is None or row["state"] != "broadcast":
                return
            decision = machine.decide(
                as_machine(row, await candidates_of(conn, payout_id)), machine.Replace()
            )
            # Same nonce, same intent, higher fees: whichever candidate lands wins.
            await save(
                conn, row, decision, self.clock(), **self._body(row, int(row["nonce"]), fees)
            )
        log.info(
            "replacing stuck payout transaction",
            extra={"payout": payout_id, "old": newest["tx_hash"]},
        )
        await self._on_signing(payout_id)

    async def _fixed(self, payout_id: str) -> bool:
        async with self.pool.acquire() as conn:
            fixed = await conn.fetchval(
                "SELECT fixed_max_fee IS NOT NULL FROM payouts WHERE id = $1", payout_id
            )
        return bool(fixed)

    async def _nonce_consumed(self, payout_id: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock(conn, payout_id)
            if row is None or row["state"] != "broadcast":
                return
            decision = machine.decide(
                as_machine(row, await candidates_of(conn, payout_id)), machine.NonceLost()
            )
            await conn.execute(
                "UPDATE payout_transactions SET status = 'dropped' WHERE payout_id = $1", payout_id
            )
            await save(conn, row, decision, self.clock())
        self._nonce_lost.pop(payout_id, None)

    async def _finalize(self, payout_id: str, tx_hash: str, succeeded: bool, fee_wei: int) -> None:
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock(conn, payout_id)
            if row is None or row["state"] != "broadcast":
                return
            decision = machine.decide(
                as_machine(row, await candidates_of(conn, payout_id)),
                machine.Landed(tx_hash, succeeded),
            )
            if decision.refusal is not None:
                log.error("landing refused", extra={"payout": payout_id, "why": decision.refusal})
                return
            await conn.execute(
                """UPDATE payout_transactions
                      SET status = CASE WHEN tx_hash = $2 THEN 'landed' ELSE 'dropped' END
                    WHERE payout_id = $1""",
                payout_id,
                tx_hash,
            )
            fresh = await save(conn, row, decision, now, fee_wei=fee_wei, network_fee=fee_wei)
            if succeeded and fresh["kind"] == "refund" and fresh["invoice_id"]:
                invoices = await lifecycle.lock_invoices(conn, [fresh["invoice_id"]])
                applied = await lifecycle.apply(
                    conn,
                    invoices,
                    {fresh["invoice_id"]: sm.RefundSettled(int(fresh["amount"]))},
                    now,
                )
                refusal = applied.decisions[fresh["invoice_id"]].refusal
                if refusal is not None:
                    # Money left on chain either way; the refund stands and the mismatch is loud.
                    log.error(
                        "refund not applied to its invoice",
                        extra={"payout": payout_id, "refusal": str(refusal)},
                    )
        log.info(
            "payout final",
            extra={
                "payout": payout_id,
                "tx_hash": tx_hash,
                "succeeded": succeeded,
                "fee_wei": fee_wei,
            },
        )
