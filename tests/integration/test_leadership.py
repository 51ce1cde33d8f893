"""Leadership against a real PostgreSQL: one leader per role, takeover with a
new epoch, a lost connection ending leadership at once, and the fence
refusing a deposed leader's transaction."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from core.chain.config import ChainConfig
from core.leadership import decide
from core.leadership import fence as fence_module
from core.leadership.elector import Elector
from core.leadership.fence import Fence, FencedError
from core.leadership.settings import LeadershipSettings
from core.payouts.config import PayoutsConfig
from core.payouts.signer_client import SignerClient, SignerTarget
from core.payouts.worker import PayoutWorker
from core.store.migrate import migrate

LEASE_S = 1.5


class Led:
    """A led task that records its fence and runs until cancelled."""

    def __init__(self) -> None:
        self.fences: list[Fence] = []
        self.cancelled = 0
        self.leading = asyncio.Event()

    async def __call__(self, fence: Fence) -> None:
        self.fences.append(fence)
        self.leading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            self.leading.clear()
            raise


async def _until(predicate: object, timeout_s: float) -> float:
    t0 = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def _elector(dsn: str, name: str) -> Elector:
    return Elector(dsn, "clock", LeadershipSettings(LEASE_S, name))


@pytest.mark.asyncio
async def test_one_leader_then_a_takeover_with_a_new_epoch_that_fences_the_old(
    fresh_dsn: str,
) -> None:
    await migrate(fresh_dsn)
    a, b = _elector(fresh_dsn, "a:1"), _elector(fresh_dsn, "b:2")
    led_a, led_b = Led(), Led()
    run_a = asyncio.create_task(a.run(led_a))
    await _until(lambda: a.term is not None, 10)
    run_b = asyncio.create_task(b.run(led_b))
    try:
        await asyncio.sleep(3 * LEASE_S)
        # b contends all the while and never leads while a holds the lock.
        assert (a.term is not None, b.term) == (True, None)
        assert a.term is not None and a.term.epoch == 1
        old = led_a.fences[-1]
        run_a.cancel()  # a dies: its session ends, its lock is freed
        await asyncio.gather(run_a, return_exceptions=True)
        took_s = await _until(lambda: b.term is not None, 10)
        assert took_s < 2 * LEASE_S
        assert b.term is not None and b.term.epoch == 2
        conn = await asyncpg.connect(fresh_dsn)
        try:
            row = await conn.fetchrow(
                "SELECT epoch, holder FROM leader_epochs WHERE role = 'clock'"
            )
            assert (row["epoch"], row["holder"]) == (2, "b:2")
            before = fence_module.refusals.get("clock", 0)
            # a's late write: refused inside its own transaction, which writes nothing.
            with pytest.raises(FencedError):
                async with conn.transaction():
                    await old.check(conn)
                    await conn.execute("CREATE TABLE late_write (x int)")
            assert fence_module.refusals["clock"] == before + 1
            assert await conn.fetchval("SELECT to_regclass('late_write')") is None
            # b's write passes.
            async with conn.transaction():
                await led_b.fences[-1].check(conn)
        finally:
            await conn.close()
    finally:
        for t in (run_a, run_b):
            t.cancel()
        await asyncio.gather(run_a, run_b, return_exceptions=True)


@pytest.mark.asyncio
async def test_a_lost_connection_ends_leadership_at_once(fresh_dsn: str) -> None:
    await migrate(fresh_dsn)
    a = _elector(fresh_dsn, "a:1")
    led = Led()
    run = asyncio.create_task(a.run(led))
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await _until(led.leading.is_set, 10)
        killed = await conn.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE application_name = 'kassa-leader clock'"""
        )
        assert killed == 1
        # The term ends when the termination is seen (not polled for: well inside
        # a heartbeat); the led task is stopped after the grace for writes in flight.
        ended_s = await _until(lambda: a.term is None, LEASE_S)
        assert ended_s < LEASE_S / 3
        stopped_s = await _until(lambda: led.cancelled == 1, LEASE_S)
        assert ended_s + stopped_s < LEASE_S / 3 + decide.resign_grace_s(LEASE_S)
        # It contends again and comes back with a new epoch.
        await _until(led.leading.is_set, 10)
        assert a.term is not None and a.term.epoch == 2
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await conn.close()


@pytest.mark.asyncio
async def test_a_takeover_waits_for_a_transaction_that_passed_the_fence(fresh_dsn: str) -> None:
    """The check and the write commit together: the new epoch is written only
    after the old leader's checked transaction ends, never in between."""
    await migrate(fresh_dsn)
    a, b = _elector(fresh_dsn, "a:1"), _elector(fresh_dsn, "b:2")
    led_a, led_b = Led(), Led()
    run_a = asyncio.create_task(a.run(led_a))
    await _until(led_a.leading.is_set, 10)
    run_b = asyncio.create_task(b.run(led_b))
    writer = await asyncpg.connect(fresh_dsn)
    try:
        tx = writer.transaction()
        await tx.start()
        await led_a.fences[-1].check(writer)  # passed: holds the epoch row FOR SHARE
        run_a.cancel()
        await asyncio.gather(run_a, return_exceptions=True)
        await asyncio.sleep(LEASE_S * 2 / 3)  # < one lease: the idle bound lets us live
        # b holds the lock by now but its increment waits for our transaction.
        assert b.term is None
        waiting = await asyncpg.connect(fresh_dsn)
        try:
            assert await waiting.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                    WHERE application_name = 'kassa-leader clock' AND wait_event_type = 'Lock'"""
            )
        finally:
            await waiting.close()
        await writer.execute("CREATE TABLE checked_write (x int)")
        await tx.commit()
        await _until(lambda: b.term is not None, 10)
        assert b.term is not None and b.term.epoch == 2
        assert await writer.fetchval("SELECT to_regclass('checked_write')::text") == "checked_write"
    finally:
        for t in (run_a, run_b):
            t.cancel()
        await asyncio.gather(run_a, run_b, return_exceptions=True)
        await writer.close()


@pytest.mark.asyncio
async def test_a_leader_paused_mid_transaction_holds_a_takeover_back_at_most_a_lease(
    fresh_dsn: str,
) -> None:
    """The fence bounds its transaction's idle time to one lease: a leader that
    stops (GC pause, SIGSTOP) after the check loses the transaction, and the
    takeover goes on; nothing it wrote commits."""
    await migrate(fresh_dsn)
    a, b = _elector(fresh_dsn, "a:1"), _elector(fresh_dsn, "b:2")
    led_a, led_b = Led(), Led()
    run_a = asyncio.create_task(a.run(led_a))
    await _until(led_a.leading.is_set, 10)
    run_b = asyncio.create_task(b.run(led_b))
    writer = await asyncpg.connect(fresh_dsn)
    try:
        tx = writer.transaction()
        await tx.start()
        await led_a.fences[-1].check(writer)
        await writer.execute("CREATE TABLE paused_write (x int)")
        run_a.cancel()
        await asyncio.gather(run_a, return_exceptions=True)
        took_s = await _until(lambda: b.term is not None, 10)
        assert took_s < 4 * LEASE_S  # the idle bound (one lease) plus a heartbeat, loaded
        assert b.term is not None and b.term.epoch == 2
        # The server ended the session: asyncpg says so as a closed connection,
        # or -- when its FATAL notice arrived while the connection was idle and
        # the close is not yet processed -- as an operation already in progress.
        # Either way the commit does not happen, and the write is gone (below).
        with pytest.raises(
            (
                asyncpg.ConnectionDoesNotExistError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            )
        ):
            await tx.commit()
        check = await asyncpg.connect(fresh_dsn)
        try:
            assert await check.fetchval("SELECT to_regclass('paused_write')") is None
        finally:
            await check.close()
    finally:
        for t in (run_a, run_b):
            t.cancel()
        await asyncio.gather(run_a, run_b, return_exceptions=True)
        writer.terminate()


@dataclass(frozen=True)
class _NoChains:
    """The worker's chain config with no adapters: the step tested talks to none."""

    chains: tuple[ChainConfig, ...] = ()
    adapters_tls: None = None

    def chain(self, chain_id: str) -> ChainConfig | None:
        return None


def _payout_worker(pool: asyncpg.Pool, tmp_path: Path) -> PayoutWorker:
    key_file = tmp_path / "caller.key"
    key_file.write_text("11" * 32)  # a caller key is loaded, never used: no signing here
    target = SignerTarget("127.0.0.1:9", None, None, None, "caller-1", key_file)
    return PayoutWorker(
        pool,
        _NoChains(),
        PayoutsConfig(signer=target),
        SignerClient(target),
        lambda: datetime.now(UTC),
    )


async def _sweep_waiting_on_failed_funding(conn: asyncpg.Connection) -> str:
    """A sweep in `created` whose gas funding failed: the worker's next step
    cancels it (GAS_FUNDING_FAILED) without any I/O but its own transaction."""
    insert = """INSERT INTO payouts (id, merchant_id, kind, chain, asset, destination, amount,
                                     request_hash, state, key_id, hold_sources, hold_amounts,
                                     source_address, funded_by, next_attempt_time)
                VALUES ($1, NULL, $2, 'eip155:31337', 'eip155:31337/slip44:60', $3, 1000, '',
                        $4, $5, '{}', '{}', $6, $7, now() - interval '1 second')"""
    deposit, treasury = "0x" + "aa" * 20, "0x" + "bb" * 20
    await conn.execute(insert, "funding-1", "gas_funding", deposit, "failed", "hot-1", None, None)
    await conn.execute(
        insert, "sweep-1", "sweep", treasury, "created", "hd:0", deposit, "funding-1"
    )
    return "sweep-1"


@pytest.mark.asyncio
async def test_a_deposed_payouts_leader_has_its_next_step_refused_and_the_new_one_goes_through(
    fresh_dsn: str, tmp_path: Path
) -> None:
    await migrate(fresh_dsn)
    a = Elector(fresh_dsn, "payouts", LeadershipSettings(LEASE_S, "a:1"))
    b = Elector(fresh_dsn, "payouts", LeadershipSettings(LEASE_S, "b:2"))
    led_a, led_b = Led(), Led()
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=4)
    assert pool is not None
    run_a = asyncio.create_task(a.run(led_a))
    run_b: asyncio.Task[None] | None = None
    try:
        await _until(lambda: bool(led_a.fences), 10)
        async with pool.acquire() as conn:
            payout_id = await _sweep_waiting_on_failed_funding(conn)
            before = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
        deposed = _payout_worker(pool, tmp_path)
        deposed.fence = led_a.fences[-1]
        # Another session takes the role while a's worker is (as if) paused.
        run_a.cancel()
        await asyncio.gather(run_a, return_exceptions=True)
        run_b = asyncio.create_task(b.run(led_b))
        await _until(lambda: bool(led_b.fences), 10)
        refused_before = fence_module.refusals.get("payouts", 0)

        with pytest.raises(FencedError):
            await deposed.step()  # resumes: its next step is refused by the fence
        async with pool.acquire() as conn:
            after = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
        assert dict(after) == dict(before)  # the payout row is unchanged
        assert fence_module.refusals["payouts"] == refused_before + 1
        assert deposed.fence.refused

        leader = _payout_worker(pool, tmp_path)
        leader.fence = led_b.fences[-1]
        await leader.step()
        async with pool.acquire() as conn:
            moved = await conn.fetchrow(
                "SELECT state, failure_reason FROM payouts WHERE id = $1", payout_id
            )
        assert (moved["state"], moved["failure_reason"]) == ("cancelled", "GAS_FUNDING_FAILED")
        assert not led_b.fences[-1].refused
        assert fence_module.refusals["payouts"] == refused_before + 1
    finally:
        run_a.cancel()
        if run_b is not None:
            run_b.cancel()
        await asyncio.gather(run_a, *([run_b] if run_b else []), return_exceptions=True)
        await pool.close()


@pytest.mark.asyncio
async def test_a_fenced_payout_worker_ends_its_loop(fresh_dsn: str, tmp_path: Path) -> None:
    """The loop does not swallow a refusal as a failed pass: run() raises it, so
    the led task ends (the elector resigns with reason "fenced")."""
    await migrate(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=4)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await _sweep_waiting_on_failed_funding(conn)
            epoch = int(
                await conn.fetchval(
                    "INSERT INTO leader_epochs (role, epoch, holder) VALUES ('payouts', 2, 'b:2')"
                    " RETURNING epoch"
                )
            )
        worker = _payout_worker(pool, tmp_path)
        worker.fence = Fence(decide.Term("payouts", epoch - 1, "a:1"), LEASE_S)
        worker.hot_address = "0x" + "cc" * 20
        with pytest.raises(FencedError):
            await asyncio.wait_for(worker._step_loop(), 10)
    finally:
        await pool.close()
