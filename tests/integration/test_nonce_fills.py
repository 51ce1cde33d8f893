"""The nonce-fill writer (core/payouts/worker.py `write_fill`) against a real PostgreSQL:
it takes only a gap no live payout holds (a free nonce included), builds the NONCE_FILL
request (the hot key to itself, value 0, no data, at that nonce), never writes two fills
for one nonce, books only the fee when the fill lands, and is fenced by the payouts
leader's epoch like every payout write."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest

from core.chain.config import ChainConfig
from core.leadership.elector import Elector
from core.leadership.fence import Fence, FencedError
from core.leadership.settings import LeadershipSettings
from core.payouts import gaps, machine, txbuilder
from core.payouts.config import PayoutsConfig
from core.payouts.machine import State
from core.payouts.payouts import as_machine, candidates_of, save
from core.payouts.signer_client import SignerClient, SignerRefusal, SignerTarget
from core.payouts.worker import _NONCE_HOLDERS, PayoutWorker
from core.store.migrate import migrate
from kassa.signer.v1 import signer_pb2
from signer.chains.evm_tx import decode_unsigned

CHAIN = "eip155:31337"
NATIVE = f"{CHAIN}/slip44:60"
HOT = "0x" + "40" * 20
FEES = txbuilder.Fees(30 * 10**9, 10**9)
LEASE_S = 1.5


@dataclass(frozen=True)
class _OneChain:
    """The worker's chain config: no adapter is called by the writer."""

    chains: tuple[ChainConfig, ...] = ()
    adapters_tls: None = None

    def chain(self, chain_id: str) -> ChainConfig | None:
        return None


class _Led:
    def __init__(self) -> None:
        self.fences: list[Fence] = []

    async def __call__(self, fence: Fence) -> None:
        self.fences.append(fence)
        await asyncio.Event().wait()


async def _until(predicate: object, timeout_s: float) -> None:
    t0 = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - t0 < timeout_s, "condition not met in time"
        await asyncio.sleep(0.02)


def _worker(pool: asyncpg.Pool, tmp_path: Path, fence: Fence) -> PayoutWorker:
    key_file = tmp_path / "caller.key"
    key_file.write_text("11" * 32)  # loaded, never used: the writer signs nothing
    target = SignerTarget("127.0.0.1:9", None, None, None, "caller-1", key_file)
    worker = PayoutWorker(
        pool, _OneChain(), PayoutsConfig(signer=target), SignerClient(target), _now
    )
    worker.hot_address = HOT
    worker.fence = fence
    return worker


def _now() -> datetime:
    return datetime.now(UTC)


async def _seed(conn: asyncpg.Connection) -> None:
    """hot-1 on the chain: next nonce 9; 5 held by a payout failed for good, 6 handed back
    (free), 7 held by a broadcast payout, 8 by one that landed and is not final."""
    await conn.execute(
        "INSERT INTO payout_nonces (chain, key_id, address, next_nonce) VALUES ($1, 'hot-1', $2, 9)",
        CHAIN,
        HOT,
    )
    await conn.execute(
        "INSERT INTO payout_free_nonces (chain, key_id, nonce) VALUES ($1, 'hot-1', 6)", CHAIN
    )
    insert = """INSERT INTO payouts (id, merchant_id, kind, chain, asset, destination, amount,
                                     request_hash, state, key_id, hold_sources, hold_amounts,
                                     nonce, landed_tx_hash, final_time)
                VALUES ($1, NULL, 'gas_funding', $2, $3, $4, 1000, '', $5, 'hot-1', '{}', '{}',
                        $6, $7, $8)"""
    await conn.execute(insert, "f5", CHAIN, NATIVE, "0x" + "a5" * 20, "failed", 5, None, _now())
    await conn.execute(insert, "b7", CHAIN, NATIVE, "0x" + "a7" * 20, "broadcast", 7, None, None)
    await conn.execute(
        insert, "c8", CHAIN, NATIVE, "0x" + "a8" * 20, "confirmed", 8, "0x" + "c8" * 32, None
    )


async def _fills(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM payouts WHERE kind = 'nonce_fill' ORDER BY nonce"))


@pytest.mark.asyncio
async def test_the_writer_fills_only_gaps_and_books_only_the_fee(
    fresh_dsn: str, tmp_path: Path
) -> None:
    await migrate(fresh_dsn)
    elector = Elector(fresh_dsn, "payouts", LeadershipSettings(LEASE_S, "a:1"))
    led = _Led()
    run = asyncio.create_task(elector.run(led))
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=4)
    assert pool is not None
    try:
        await _until(lambda: bool(led.fences), 10)
        worker = _worker(pool, tmp_path, led.fences[-1])
        async with pool.acquire() as conn:
            await _seed(conn)

        five = await worker.write_fill(CHAIN, 5, FEES)
        assert five is not None
        # Held by a fill now: a second one for the same nonce is never written.
        assert await worker.write_fill(CHAIN, 5, FEES) is None
        # A live payout's nonce (broadcast; landed and not final) and one never allocated.
        for held in (7, 8, 9):
            assert await worker.write_fill(CHAIN, held, FEES) is None
        # A free nonce below a live payout is a gap too; the fill takes it off the free list.
        six = await worker.write_fill(CHAIN, 6, FEES)
        async with pool.acquire() as conn:
            fills = await _fills(conn)
            free = await conn.fetch("SELECT nonce FROM payout_free_nonces")
            next_nonce = await conn.fetchval("SELECT next_nonce FROM payout_nonces")
        assert [(f["id"], int(f["nonce"])) for f in fills] == [(five, 5), (six, 6)]
        assert free == [] and next_nonce == 9  # nothing new allocated
        for fill in fills:
            assert (fill["state"], fill["merchant_id"], int(fill["amount"])) == (
                "signing",
                None,
                0,
            )
            assert (fill["asset"], fill["destination"], fill["key_id"]) == (NATIVE, HOT, "hot-1")
            body = signer_pb2.SignRequestBody.FromString(bytes(fill["sign_body"]))
            assert body.intent.purpose == signer_pb2.PURPOSE_NONCE_FILL
            assert (body.intent.destination, body.intent.amount) == (HOT, "0")
            assert (body.key_id, body.chain, body.intent.asset) == ("hot-1", CHAIN, NATIVE)
            tx = decode_unsigned(body.unsigned_transaction)
            assert (tx.nonce, "0x" + tx.to.hex(), tx.value, tx.data) == (
                int(fill["nonce"]),
                HOT,
                0,
                b"",
            )
            assert (tx.max_fee_per_gas, tx.gas) == (FEES.max_fee_per_gas_wei, 21_000)

        # The database refuses a second standing fill for a nonce whoever writes it.
        async with pool.acquire() as conn:
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    """INSERT INTO payouts (id, merchant_id, kind, chain, asset, destination,
                                            amount, request_hash, state, key_id, hold_sources,
                                            hold_amounts, nonce)
                       VALUES ('again', NULL, 'nonce_fill', $1, $2, $3, 0, '', 'broadcast',
                               'hot-1', '{}', '{}', 5)""",
                    CHAIN,
                    NATIVE,
                    HOT,
                )

            # Landed: nothing moved, the fee is booked as any payout's gas.
            async with conn.transaction():
                row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1 FOR UPDATE", five)
                tx_hash = "0x" + "f5" * 32
                # As the worker does: decided on the stored candidates, then stored.
                signed = machine.decide(as_machine(row, ()), machine.Signed(tx_hash, 5))
                await conn.execute(
                    """INSERT INTO payout_transactions (tx_hash, payout_id, nonce,
                           max_fee_per_gas, max_priority_fee_per_gas, raw)
                       VALUES ($1, $2, 5, 1, 1, '\\x00')""",
                    tx_hash,
                    five,
                )
                row = await save(conn, row, signed, _now())
                p = as_machine(row, await candidates_of(conn, five))
                row = await save(conn, row, machine.decide(p, machine.Broadcasted()), _now())
                p = as_machine(row, await candidates_of(conn, five))
                landed = machine.decide(p, machine.Landed(tx_hash, succeeded=True))
                await save(conn, row, landed, _now(), fee_wei=21_000 * 10**9, network_fee=1)
            booked = await conn.fetch(
                "SELECT * FROM ledger_transfers WHERE reference = $1", f"sweeps/{five}"
            )
        assert [(t["id"], t["debit_account_id"], t["credit_account_id"]) for t in booked] == [
            (
                f"payout:{five}:fee",
                f"platform:network_fees:{NATIVE}",
                f"platform:custody:{NATIVE}:hot",
            )
        ]
        assert int(booked[0]["amount"]) == 21_000 * 10**9
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await pool.close()


@pytest.mark.asyncio
async def test_a_fill_the_signer_refuses_is_cancelled_and_retried_only_after_another_wait(
    fresh_dsn: str, tmp_path: Path
) -> None:
    """Nobody approves a fill: a policy refusal (no NONCE_FILL rule) cancels it, its nonce
    goes back to the free list and stays on the row, so the gap decider waits a whole wait
    before the next fill instead of asking the signer every second."""
    await migrate(fresh_dsn)
    elector = Elector(fresh_dsn, "payouts", LeadershipSettings(LEASE_S, "a:1"))
    led = _Led()
    run = asyncio.create_task(elector.run(led))
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=4)
    assert pool is not None
    try:
        await _until(lambda: bool(led.fences), 10)
        worker = _worker(pool, tmp_path, led.fences[-1])
        async with pool.acquire() as conn:
            await _seed(conn)
        fill_id = await worker.write_fill(CHAIN, 5, FEES)
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", fill_id)
        refusal = SignerRefusal(grpc.StatusCode.PERMISSION_DENIED, "POLICY_NO_MATCH", "no rule")
        await worker._refused(fill_id, row, refusal)
        async with pool.acquire() as conn:
            fill = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", fill_id)
            free = [
                int(r["nonce"]) for r in await conn.fetch("SELECT nonce FROM payout_free_nonces")
            ]
            holders = await conn.fetch(
                _NONCE_HOLDERS, CHAIN, "hot-1", sorted(gaps.MOVING), _now() - timedelta(seconds=60)
            )
        assert (fill["state"], fill["failure_reason"], int(fill["nonce"])) == (
            "cancelled",
            "POLICY_NO_MATCH",
            5,
        )
        assert 5 in free
        seen = [
            gaps.Holder(
                int(r["nonce"]),
                State(r["state"]),
                r["final_time"] is not None,
                r["kind"] == "nonce_fill",
                r["create_time"],
            )
            for r in holders
        ]
        # First seen an hour ago: without the cancelled fill it would be filled right now.
        an_hour_ago = {5: _now() - timedelta(hours=1)}
        assert gaps.plan(5, 5, seen, an_hour_ago, _now(), 60).fill == ()
        assert gaps.plan(5, 5, seen, an_hour_ago, _now() + timedelta(seconds=61), 60).fill == (5,)
        # The cancelled fill holds nothing: another may be written for the nonce.
        assert await worker.write_fill(CHAIN, 5, FEES) not in (None, fill_id)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await pool.close()


@pytest.mark.asyncio
async def test_a_deposed_leaders_fill_is_refused_and_writes_nothing(
    fresh_dsn: str, tmp_path: Path
) -> None:
    await migrate(fresh_dsn)
    a = Elector(fresh_dsn, "payouts", LeadershipSettings(LEASE_S, "a:1"))
    b = Elector(fresh_dsn, "payouts", LeadershipSettings(LEASE_S, "b:2"))
    led_a, led_b = _Led(), _Led()
    run_a = asyncio.create_task(a.run(led_a))
    run_b: asyncio.Task[None] | None = None
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=4)
    assert pool is not None
    try:
        await _until(lambda: bool(led_a.fences), 10)
        async with pool.acquire() as conn:
            await _seed(conn)
        deposed = _worker(pool, tmp_path, led_a.fences[-1])
        run_a.cancel()
        await asyncio.gather(run_a, return_exceptions=True)
        run_b = asyncio.create_task(b.run(led_b))
        await _until(lambda: bool(led_b.fences), 10)

        with pytest.raises(FencedError):
            await deposed.write_fill(CHAIN, 5, FEES)
        async with pool.acquire() as conn:
            assert await _fills(conn) == []
            assert [
                r["nonce"] for r in await conn.fetch("SELECT nonce FROM payout_free_nonces")
            ] == [6]
        leader = _worker(pool, tmp_path, led_b.fences[-1])
        assert await leader.write_fill(CHAIN, 5, FEES) is not None
    finally:
        run_a.cancel()
        if run_b is not None:
            run_b.cancel()
        await asyncio.gather(run_a, *([run_b] if run_b else []), return_exceptions=True)
        await pool.close()
