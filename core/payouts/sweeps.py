"""Deposit sweeps: the funds received on deposit addresses go to the chain's
treasury (docs/payouts.md "Sweeps").

A sweep is planned here and then sent by the payout worker like any payout
(same table, state machine, nonce manager, stored-before-broadcast order):
- a token sweep needs gas on the deposit address: a `gas_funding` row (the hot
  key sends exactly the shortfall of gas limit * max fee per gas) and a
  `sweep` row (key hd:<index>, fixed at those fees and that gas limit) that
  waits for the funding to confirm. The gas limit is the node's estimate of
  the transfer (EstimateTransferGas) plus a margin, not a fixed headroom:
  what the sweep does not burn stays on the deposit address, so the estimate
  is what keeps that dust small;
- a native sweep pays its own gas: balance - gas limit * max fee per gas.

What is swept is the address's balance on chain (GetTokenBalance /
GetAccount), not a sum of payments: the address holds everything it ever
received (refunds leave from the hot key), minus what is still confirming,
since a reorg could take that back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import grpc

from core.chain.config import Chains as Config
from core.domain import assets
from core.invoices import state as invoice_state
from core.leadership.fence import Fence, FencedError
from core.payouts import ledger, nonces, store, txbuilder
from core.payouts.config import PayoutsConfig, SweepsConfig
from core.payouts.machine import State
from core.payouts.signer_client import SignerClient
from kassa.chain.v1 import adapter_pb2, adapter_pb2_grpc

log = logging.getLogger("kassa.sweeps")
# Invoices whose payment is settled; refunds of them are paid from the hot key,
# so sweeping never takes what a refund needs (one in progress still waits).
SETTLED = tuple(sorted(s.value for s in invoice_state.AT_REST))
# Closed invoices whose funds are parked (cancelled, expired with late funds):
# swept like settled ones once they hold confirmed funds (issue 19).
PARKING = tuple(sorted(s.value for s in invoice_state.PARKING))
# A sweep or refund back in broadcast after a reorg is in progress again.
_FINAL = [State.CONFIRMED, State.FAILED, State.CANCELLED]


# -- pure parts (tests/unit/test_sweep_plan.py) --------------------------------


@dataclass(frozen=True)
class Deposit:
    invoice_id: str
    chain: str
    asset: str
    address: str
    derivation_index: int
    state: str
    settled_time: datetime
    refund_in_progress: bool
    sweep_in_progress: bool
    unconfirmed: int  # base units of the asset still confirming on the address
    received: int = 0  # confirmed base units of the invoice's asset recorded on it


def eligible(d: Deposit, now: datetime, min_age_s: float) -> bool:
    """Whether the deposit address of `d` may be swept now."""
    return (
        (d.state in SETTLED or (d.state in PARKING and d.received > 0))
        and not d.refund_in_progress
        and not d.sweep_in_progress
        and now - d.settled_time >= timedelta(seconds=min_age_s)
    )


# Margin over the node's estimate: state can change between planning and inclusion (another
# transfer touching the same token slots); wallets commonly add 20%.
GAS_MARGIN_PERCENT = 20


def token_gas_limit(estimate: int) -> int | None:
    """A token sweep's gas limit from the node's estimate; None when even the estimate is over
    the cap for a token transfer (txbuilder.GAS_TOKEN): such a token is not swept unattended."""
    assert estimate > 0, "a node estimates at least the intrinsic gas"
    if estimate > txbuilder.GAS_TOKEN:
        return None
    with_margin = estimate + -(-estimate * GAS_MARGIN_PERCENT // 100)
    return min(with_margin, txbuilder.GAS_TOKEN)


@dataclass(frozen=True)
class Plan:
    amount: int  # swept, base units of the asset
    gas_funding_wei: int  # the hot key sends this first; 0: no funding needed
    gas_limit: int
    fees: txbuilder.Fees


def gas_budget_wei(gas_limit: int, fees: txbuilder.Fees) -> int:
    """The most a transaction can cost: what the sender must hold for its gas."""
    return gas_limit * fees.max_fee_per_gas_wei


def plan(
    asset: str,
    asset_balance: int,
    unconfirmed: int,
    native_balance_wei: int,
    fees: txbuilder.Fees,
    min_amount: int,
    token_gas: int = txbuilder.GAS_TOKEN,
) -> Plan | None:
    """The sweep of one deposit address, or None when there is nothing worth it.

    `asset_balance` is the address's balance of the invoice's asset on chain,
    `native_balance_wei` its native coin (the same number for a native asset);
    `token_gas` the gas limit of a token sweep (token_gas_limit of the estimate).
    """
    sweepable = asset_balance - max(unconfirmed, 0)
    if assets.is_native(asset):
        gas = txbuilder.GAS_NATIVE
        # The balance pays its own gas; the unused part of the budget stays as dust.
        amount = sweepable - gas_budget_wei(gas, fees)
        return Plan(amount, 0, gas, fees) if amount >= max(min_amount, 1) else None
    if sweepable < max(min_amount, 1):
        return None
    gas = token_gas
    # Only the shortfall: gas left over by an earlier sweep is used first.
    funding = max(0, gas_budget_wei(gas, fees) - native_balance_wei)
    return Plan(sweepable, funding, gas, fees)


# -- planning against the database and the chain ---------------------------------


class Sweeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        config: Config,
        payouts: PayoutsConfig,
        sweeps: SweepsConfig,
        signer: SignerClient,
        clock: Callable[[], datetime],
        adapters: dict[str, adapter_pb2_grpc.ChainAdapterServiceStub],
    ) -> None:
        self.pool = pool
        self.config = config
        self.payouts = payouts
        self.sweeps = sweeps
        self.signer = signer
        self.clock = clock
        self.adapters = adapters  # the payout worker's channels, one per chain
        self._hot_address = ""
        self._lock = asyncio.Lock()  # one plan at a time per process (others: the index)

    async def run(self, fence: Fence | None = None) -> None:
        """Plans every chain with a treasury each interval_s (0: on demand only).
        With a fence (this replica leads `sweeps`, core/leadership) every plan it
        writes is fenced, and a refusal ends the loop."""
        if self.sweeps.interval_s <= 0:
            return
        while True:
            for chain in self.sweeps.treasury:
                try:
                    await self.run_once(chain, fence)
                except (asyncio.CancelledError, FencedError):
                    raise  # fenced: another replica leads sweeps
                except Exception:
                    log.exception("sweep planning failed", extra={"chain": chain})
            await asyncio.sleep(self.sweeps.interval_s)

    async def _deposits(self, chain: str) -> list[Deposit]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT i.id, i.chain, i.asset, i.deposit_address, i.derivation_index,
                           i.state, i.update_time, i.amount_received,
                           EXISTS (SELECT 1 FROM payouts r
                                    WHERE r.invoice_id = i.id AND r.kind = 'refund'
                                      AND NOT r.state = ANY($4::text[])) AS refund_in_progress,
                           EXISTS (SELECT 1 FROM payouts s
                                    WHERE s.chain = i.chain AND s.kind = 'sweep'
                                      AND s.source_address = i.deposit_address
                                      AND NOT s.state = ANY($4::text[])) AS sweep_in_progress,
                           (SELECT coalesce(sum(p.amount), 0) FROM payments p
                             WHERE p.invoice_id = i.id AND p.asset = i.asset
                               AND p.status = 'confirming') AS unconfirmed
                      FROM invoices i
                     WHERE i.chain = $1
                       AND (i.state = ANY($2::text[])
                            OR (i.state = ANY($3::text[]) AND i.amount_received > 0))
                       -- Swept after its last payment: nothing new to read on chain.
                       AND NOT EXISTS (
                           SELECT 1 FROM payouts s
                            WHERE s.chain = i.chain AND s.kind = 'sweep'
                              AND s.source_address = i.deposit_address
                              AND s.state = $5
                              AND s.create_time > (SELECT coalesce(max(p.first_seen_time),
                                                                   '-infinity')
                                                     FROM payments p WHERE p.invoice_id = i.id))
                     ORDER BY i.update_time, i.id LIMIT 500""",
                chain,
                list(SETTLED),
                list(PARKING),
                _FINAL,
                State.CONFIRMED,
            )
        return [
            Deposit(
                invoice_id=r["id"],
                chain=r["chain"],
                asset=r["asset"],
                address=r["deposit_address"],
                derivation_index=int(r["derivation_index"]),
                state=r["state"],
                settled_time=r["update_time"],
                refund_in_progress=r["refund_in_progress"],
                sweep_in_progress=r["sweep_in_progress"],
                unconfirmed=int(r["unconfirmed"]),
                received=int(r["amount_received"]),
            )
            for r in rows
        ]

    async def run_once(self, chain: str, fence: Fence | None = None) -> list[asyncpg.Record]:
        """Plans the sweeps of `chain` now; returns the rows created. `fence`: the
        leader's (checked first in each plan's transaction), for the scheduled loop
        and for an on-demand RunSweeps alike (core/api/leader.py)."""
        treasury = self.sweeps.treasury.get(chain)
        if treasury is None or chain not in self.adapters:
            raise LookupError(f"no [sweeps] treasury or adapter for {chain}")
        async with self._lock:
            if not self._hot_address:
                self._hot_address = await self.signer.address_of(self.payouts.hot_key_id)
            adapter = self.adapters[chain]
            now = self.clock()
            deposits = [
                d for d in await self._deposits(chain) if eligible(d, now, self.sweeps.min_age_s)
            ]
            if not deposits:
                return []
            estimate = await adapter.EstimateFees(adapter_pb2.EstimateFeesRequest(), timeout=10)
            fees = txbuilder.capped_fees(
                int(estimate.base_fee_per_gas),
                int(estimate.max_priority_fee_per_gas),
                self.payouts.max_fee_per_gas_wei,
                self.payouts.max_priority_fee_per_gas_wei,
            )
            created: list[asyncpg.Record] = []
            for d in deposits:
                created += await self._sweep(adapter, d, treasury, fees, fence)
            return created

    async def _sweep(
        self,
        adapter: adapter_pb2_grpc.ChainAdapterServiceStub,
        d: Deposit,
        treasury: str,
        fees: txbuilder.Fees,
        fence: Fence | None = None,
    ) -> Sequence[asyncpg.Record]:
        account = await adapter.GetAccount(
            adapter_pb2.GetAccountRequest(address=d.address), timeout=10
        )
        native_wei = int(account.balance or 0)
        if assets.is_native(d.asset):
            balance = native_wei
        else:
            answer = await adapter.GetTokenBalance(
                adapter_pb2.GetTokenBalanceRequest(address=d.address, asset=d.asset), timeout=10
            )
            balance = int(answer.balance or 0)
        minimum = self.sweeps.min_amount.get(d.asset, self.sweeps.default_min_amount)
        token_gas = txbuilder.GAS_TOKEN
        if not assets.is_native(d.asset) and balance - max(d.unconfirmed, 0) >= max(minimum, 1):
            limit = await self._token_gas(adapter, d, treasury, balance - max(d.unconfirmed, 0))
            if limit is None:
                return []
            token_gas = limit
        p = plan(d.asset, balance, d.unconfirmed, native_wei, fees, minimum, token_gas)
        if p is None:
            return []
        key_id = f"hd:{d.derivation_index}"
        now = self.clock()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if fence is not None:
                    await fence.check(conn)  # first: a deposed planner writes nothing
                await ledger.ensure_platform(conn, d.asset, d.chain)
                # The deposit key's nonces, like the hot key's: from the chain, then ours.
                await nonces.reconcile(
                    conn, d.chain, key_id, d.address, account.latest_nonce, account.pending_nonce
                )
                rows: list[asyncpg.Record] = []
                funding_id = None
                if p.gas_funding_wei:
                    funding = await self._insert(
                        conn,
                        kind="gas_funding",
                        d=d,
                        key_id=self.payouts.hot_key_id,
                        source=self._hot_address,
                        destination=d.address,
                        asset=assets.native(d.chain),
                        amount=p.gas_funding_wei,
                        fees=None,
                        funded_by=None,
                        now=now,
                    )
                    rows.append(funding)
                    funding_id = funding["id"]
                rows.append(
                    await self._insert(
                        conn,
                        kind="sweep",
                        d=d,
                        key_id=key_id,
                        source=d.address,
                        destination=treasury,
                        asset=d.asset,
                        amount=p.amount,
                        fees=p.fees,
                        funded_by=funding_id,
                        now=now,
                        gas_limit=p.gas_limit,
                    )
                )
        except asyncpg.UniqueViolationError:
            return []  # another planner (core) took this address first
        log.info(
            "sweep planned",
            extra={
                "invoice": d.invoice_id,
                "address": d.address,
                "amount": p.amount,
                "gas_funding_wei": p.gas_funding_wei,
            },
        )
        return rows

    async def _token_gas(
        self,
        adapter: adapter_pb2_grpc.ChainAdapterServiceStub,
        d: Deposit,
        treasury: str,
        amount: int,
    ) -> int | None:
        """The gas limit of sweeping `amount` of the token to the treasury, from the node's
        estimate; None (nothing planned now, logged) when the node says the transfer would
        fail or the token costs more than a token transfer may."""
        try:
            estimate = await adapter.EstimateTransferGas(
                adapter_pb2.EstimateTransferGasRequest(
                    from_address=d.address, to_address=treasury, asset=d.asset, amount=str(amount)
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            log.warning(
                "sweep not planned: the node says the transfer would fail",
                extra={"invoice": d.invoice_id, "address": d.address, "error": exc.details()},
            )
            return None
        limit = token_gas_limit(estimate.gas)
        if limit is None:
            log.warning(
                "sweep not planned: the token transfer costs more gas than allowed",
                extra={"invoice": d.invoice_id, "estimate": estimate.gas},
            )
        return limit

    async def _insert(
        self,
        conn: asyncpg.Connection,
        *,
        kind: str,
        d: Deposit,
        key_id: str,
        source: str,
        destination: str,
        asset: str,
        amount: int,
        fees: txbuilder.Fees | None,
        funded_by: str | None,
        now: datetime,
        gas_limit: int | None = None,
    ) -> asyncpg.Record:
        row = await conn.fetchrow(
            """INSERT INTO payouts (id, merchant_id, kind, invoice_id, chain, asset, destination,
                                    amount, request_hash, state, key_id, hold_sources,
                                    hold_amounts, source_address, funded_by, fixed_max_fee,
                                    fixed_tip, create_time, update_time, next_attempt_time,
                                    fixed_gas_limit)
               VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, '', $14, $8, '{}', '{}',
                       $9, $10, $11, $12, $13, $13, $13, $15)
               RETURNING *""",
            secrets.token_hex(10),
            kind,
            d.invoice_id,
            d.chain,
            asset,
            destination,
            amount,
            key_id,
            source,
            funded_by,
            None if fees is None else fees.max_fee_per_gas_wei,
            None if fees is None else fees.max_priority_fee_per_gas_wei,
            now,
            State.CREATED,
            gas_limit,
        )
        assert row is not None
        return row

    async def views(self, rows: Sequence[asyncpg.Record]) -> list[store.SweepView]:
        """The rows with their transactions and swept invoice's merchant, for an answer."""
        async with self.pool.acquire() as conn:
            return [await store.sweep_view(conn, row) for row in rows]

    async def get(self, sweep_id: str) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(
                # Nonce fills are platform rows too, but no sweep (docs/payouts.md).
                "SELECT * FROM payouts WHERE id = $1 AND merchant_id IS NULL"
                " AND kind <> 'nonce_fill'",
                sweep_id,
            )
            return row

    async def list(
        self, chain: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    """SELECT * FROM payouts
                        WHERE merchant_id IS NULL AND kind <> 'nonce_fill'
                          AND ($1 = '' OR chain = $1)
                          AND ($2::timestamptz IS NULL OR (create_time, id) < ($2, $3))
                        ORDER BY create_time DESC, id DESC LIMIT $4""",
                    chain,
                    before[0] if before else None,
                    before[1] if before else "",
                    limit,
                )
            )
