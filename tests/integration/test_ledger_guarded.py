"""The poster's one-statement path (core.ledger.guarded) against real PostgreSQL.

It decides on totals the poster remembers and lets the database verify
them under lock. The attackers here are the poster's own assumptions: a
second core process (another replica) posting to the same accounts, another
path of this process moving the totals, a concurrent store of the same
transfer id, and a connection killed in the middle of a group. In every
case a request must be either posted once, with the result the locking path
would give, or refused/failed cleanly so that its retry (same ids) posts it
once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import asyncpg
import pytest

from core.ledger import guarded, store
from core.ledger.batcher import Poster
from core.ledger.rules import (
    Account,
    AccountFlags,
    Balances,
    Reason,
    Result,
    Transfer,
    TransferFlags,
    effects,
)
from core.store.migrate import migrate
from tests.support.kassactl import ledger_check

ASSET = "eip155:1/slip44:60"
DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING)
VOID = int(TransferFlags.VOID_PENDING)
LINKED = int(TransferFlags.LINKED)


def now() -> datetime:
    return datetime.now(UTC)


async def _accounts(conn: asyncpg.Connection, names: dict[str, int]) -> None:
    results = await store.create_accounts(
        conn, [Account(n, ASSET, 1, flags) for n, flags in names.items()]
    )
    assert all(r.ok for r in results), results


async def _balances(pool: asyncpg.Pool, names: Sequence[str]) -> dict[str, Balances]:
    async with pool.acquire() as conn:
        return {n: a.balances for n, a in (await store.get_accounts(conn, names)).items()}


# --- two replicas ------------------------------------------------------------------

SHARED = ["shared0", "shared1"]
SUBMITTERS = 8
REQUESTS = 50


def _replica(dsn: str, replica: int, start_at: float) -> tuple[list[tuple[Transfer, Result]], int]:
    """One core process's poster and its callers; (what each was told, misses)."""
    return asyncio.run(_replica_async(dsn, replica, start_at))


async def _replica_async(
    dsn: str, replica: int, start_at: float
) -> tuple[list[tuple[Transfer, Result]], int]:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
    poster = Poster(pool, now)
    poster.start()
    told: list[tuple[Transfer, Result]] = []
    me = f"r{replica}"

    async def caller(c: int) -> None:
        rng = random.Random(f"{replica}-{c}")
        pendings: list[Transfer] = []
        sent: list[list[Transfer]] = []
        for i in range(REQUESTS):
            tid = f"{me}-{c}-{i}"
            roll = rng.random()
            batch: list[Transfer]
            if roll < 0.25:
                batch = [Transfer(tid, "world", rng.choice(SHARED), rng.randint(1, 50))]
            elif roll < 0.5:  # may exceed what the shared account holds: refused, never lost
                batch = [Transfer(tid, rng.choice(SHARED), "sink", rng.randint(1, 80))]
            elif roll < 0.6:
                batch = [
                    Transfer(tid + "a", "world", me, rng.randint(1, 30), flags=LINKED),
                    Transfer(tid + "b", me, rng.choice(SHARED), rng.randint(1, 40)),
                ]
            elif roll < 0.75:
                batch = [
                    Transfer(tid, rng.choice(SHARED), "sink", rng.randint(1, 30), flags=PENDING)
                ]
            elif roll < 0.9 and pendings:
                p = pendings.pop(rng.randrange(len(pendings)))
                if rng.random() < 0.5:
                    batch = [
                        Transfer(tid, amount=rng.randint(1, p.amount), flags=POST, pending_id=p.id)
                    ]
                else:
                    batch = [Transfer(tid, flags=VOID, pending_id=p.id)]
            elif sent:
                batch = rng.choice(sent)  # a replay, as a client retrying would send
            else:
                batch = [Transfer(tid, "world", "sink", 1)]
            results = await poster.submit(batch)
            sent.append(batch)
            for t, r in zip(batch, results, strict=True):
                told.append((t, r))
                if r.ok and not r.existed and t.flags & PENDING:
                    pendings.append(t)

    await asyncio.sleep(max(0.0, start_at - time.time()))  # both replicas at once
    await asyncio.gather(*(caller(c) for c in range(SUBMITTERS)))
    known = poster.known
    assert known is not None
    await poster.stop()
    await pool.close()
    return told, known.misses


def test_two_replicas_on_the_same_accounts_lose_nothing_and_keep_the_limits(
    fresh_dsn: str,
) -> None:
    async def setup() -> None:
        await migrate(fresh_dsn)
        conn = await asyncpg.connect(fresh_dsn)
        try:
            await _accounts(
                conn,
                {"world": 0, "sink": 0, "r0": DMNEC, "r1": DMNEC, **dict.fromkeys(SHARED, DMNEC)},
            )
        finally:
            await conn.close()

    asyncio.run(setup())
    start_at = time.time() + 3.0  # past both processes' start-up
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as executor:
        futures = [executor.submit(_replica, fresh_dsn, r, start_at) for r in (0, 1)]
        replicas = [f.result(timeout=300) for f in futures]
    told = [pair for pairs, _ in replicas for pair in pairs]

    # Each accepted, new transfer as stored (resolutions with their pending's accounts).
    by_id = {t.id: t for t, r in told if r.ok and not r.existed}
    expected: dict[str, Balances] = defaultdict(Balances)
    for t in by_id.values():
        pending_amount = 0
        if t.pending_id:
            p = by_id[t.pending_id]
            pending_amount = p.amount
            amount = t.amount if t.flags & POST else p.amount
            t = Transfer(t.id, p.debit_account_id, p.credit_account_id, amount, flags=t.flags)
        debit, credit = effects(t, pending_amount)
        expected[t.debit_account_id] += debit
        expected[t.credit_account_id] += credit

    async def check() -> None:
        pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=2)
        try:
            names = ["world", "sink", "r0", "r1", *SHARED]
            balances = await _balances(pool, names)
            assert {n: b for n, b in balances.items() if b != Balances()} == dict(expected)
            for name in ["r0", "r1", *SHARED]:  # the limit held, whoever raced
                b = balances[name]
                assert b.debits_pending + b.debits_posted <= b.credits_posted, (name, b)
            async with pool.acquire() as conn:
                stored = {r["id"] for r in await conn.fetch("SELECT id FROM ledger_transfers")}
            assert stored == set(by_id)  # nothing refused was stored, nothing told lost
        finally:
            await pool.close()

    asyncio.run(check())
    refusals = {r.reason for _, r in told if not r.ok}
    assert Reason.EXCEEDS_CREDITS in refusals  # the limits were exercised
    assert any(r.existed for _, r in told)  # so were replays
    checked = ledger_check(fresh_dsn)
    assert checked.returncode == 0, checked.stderr


# --- totals moved by another writer -----------------------------------------------


@pytest.mark.asyncio
async def test_a_decision_on_stale_totals_is_never_written(fresh_dsn: str) -> None:
    """The poster remembers `a` empty; another writer funds it; a debit the
    stale totals would refuse is accepted, decided again on the locked ones."""
    await migrate(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=2, max_size=4)
    poster = Poster(pool, now)
    poster.start()
    try:
        async with pool.acquire() as conn:
            await _accounts(conn, {"world": 0, "a": DMNEC, "b": 0})
        assert not (await poster.submit([Transfer("t1", "a", "b", 5)]))[0].ok  # a is empty
        async with pool.acquire() as conn:  # another process (or path) funds a
            await store.create_transfers(conn, [Transfer("fund", "world", "a", 10)], now())
        known = poster.known
        assert known is not None
        before = (known.guarded, known.misses, known.locking)
        assert (await poster.submit([Transfer("t2", "a", "b", 5)]))[0] == Result()
        assert (known.guarded, known.misses, known.locking) == (
            before[0] + 1,
            before[1] + 1,
            before[2],
        )
        # And the other way: it drains a behind the poster's back.
        async with pool.acquire() as conn:
            await store.create_transfers(conn, [Transfer("drain", "a", "world", 5)], now())
        result = (await poster.submit([Transfer("t3", "a", "b", 1)]))[0]
        assert result == Result(Reason.EXCEEDS_CREDITS, "debit_account_id")
        assert known.misses == before[1] + 2
        balances = await _balances(pool, ["a", "b"])
        assert balances["a"] == Balances(debits_posted=10, credits_posted=10)
        assert balances["b"] == Balances(credits_posted=5)
    finally:
        await poster.stop()
        await pool.close()


# --- the same id stored by someone else -------------------------------------------


@pytest.mark.asyncio
async def test_an_id_stored_meanwhile_gets_the_locking_paths_answer(fresh_dsn: str) -> None:
    await migrate(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=2, max_size=4)
    poster = Poster(pool, now)
    poster.start()
    try:
        async with pool.acquire() as conn:
            await _accounts(conn, {"a": 0, "b": 0, "c": 0, "d": 0})
        assert (await poster.submit([Transfer("warm", "a", "b", 1)]))[0].ok
        # Stored before: the statement sees it and hands the group over.
        async with pool.acquire() as conn:
            await store.create_transfers(conn, [Transfer("x", "a", "b", 3)], now())
        assert (await poster.submit([Transfer("x", "a", "b", 3)]))[0] == Result(existed=True)
        # Stored by a transaction still open when the statement runs (another
        # replica, other accounts): the INSERT waits on the id, then fails,
        # and the locking path names the differing field.
        other = await asyncpg.connect(fresh_dsn)
        try:
            tx = other.transaction()
            await tx.start()
            await store.post(other, [Transfer("y", "c", "d", 7)], now())
            waiting = asyncio.ensure_future(poster.submit([Transfer("y", "a", "b", 7)]))
            await _until_waiting(pool)
            await tx.commit()
            assert (await waiting)[0] == Result(
                Reason.ID_EXISTS_WITH_DIFFERENT_FIELD, "debit_account_id"
            )
        finally:
            await other.close()
        balances = await _balances(pool, ["a", "b", "c", "d"])
        assert balances["b"] == Balances(credits_posted=4)  # warm and x, once each
        assert balances["d"] == Balances(credits_posted=7)
    finally:
        await poster.stop()
        await pool.close()


async def _until_waiting(pool: asyncpg.Pool) -> int:
    """The pid of the poster's statement once it waits on a lock."""
    for _ in range(500):
        async with pool.acquire() as conn:
            pid = await conn.fetchval(
                """SELECT pid FROM pg_stat_activity
                    WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
                      AND query LIKE '%WITH locked AS MATERIALIZED%' LIMIT 1"""
            )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("the poster's statement never waited")


# --- a connection killed mid-group -------------------------------------------------


@pytest.mark.asyncio
async def test_a_connection_killed_mid_group_leaves_each_request_retryable_once(
    fresh_dsn: str,
) -> None:
    await migrate(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=2, max_size=6)
    poster = Poster(pool, now)
    try:
        async with pool.acquire() as conn:
            await _accounts(conn, {"world": 0, "a": DMNEC, "b": 0})
            await store.create_transfers(conn, [Transfer("fund", "world", "a", 100)], now())
        # Hold a's row so the group's statement waits inside the database.
        holder = await asyncpg.connect(fresh_dsn)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SELECT 1 FROM ledger_accounts WHERE id = 'a' FOR UPDATE")
            requests = [[Transfer(f"k{i}", "a", "b", 10)] for i in range(5)]
            # All queued before the poster runs: they share one group.
            waiters = [asyncio.ensure_future(poster.submit(r)) for r in requests]
            await asyncio.sleep(0)
            poster.start()
            pid = await _until_waiting(pool)
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            outcomes = await asyncio.gather(*waiters, return_exceptions=True)
            await tx.rollback()
        finally:
            await holder.close()
        # Failed, every one of them, and nothing of them stored.
        assert all(isinstance(o, Exception) for o in outcomes), outcomes
        balances = await _balances(pool, ["a", "b"])
        assert balances["b"] == Balances()
        # Their retries (same ids) post each once; a second retry is a replay.
        retried = await asyncio.gather(*(poster.submit(r) for r in requests))
        assert [r[0] for r in retried] == [Result()] * 5
        again = await asyncio.gather(*(poster.submit(r) for r in requests))
        assert [r[0] for r in again] == [Result(existed=True)] * 5
        # Past the limit: refused, and a's totals are exactly those posted.
        assert (await poster.submit([Transfer("k5", "a", "b", 51)]))[0].reason == (
            Reason.EXCEEDS_CREDITS
        )
        balances = await _balances(pool, ["a", "b"])
        assert balances["a"] == Balances(debits_posted=50, credits_posted=100)
        assert balances["b"] == Balances(credits_posted=50)
    finally:
        await poster.stop()
        await pool.close()


@pytest.mark.asyncio
async def test_a_connection_killed_while_idle_costs_at_most_one_failed_group(
    fresh_dsn: str,
) -> None:
    await migrate(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=2, max_size=6)
    poster = Poster(pool, now)
    poster.start()
    try:
        async with pool.acquire() as conn:
            await _accounts(conn, {"a": 0, "b": 0})
        assert (await poster.submit([Transfer("one", "a", "b", 1)]))[0].ok
        async with pool.acquire() as conn:  # the poster keeps its connection: kill it
            killed = await conn.fetchval(
                """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
                     FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                      AND query LIKE '%WITH locked AS MATERIALIZED%'"""
            )
        assert killed == 1
        request = [Transfer("two", "a", "b", 2)]
        first: list[Result] | BaseException
        try:
            first = await poster.submit(request)
        except Exception as exc:  # the lost connection, answered as unavailable
            first = exc
        retry = await poster.submit(request)
        if isinstance(first, BaseException):
            assert retry == [Result()]
        else:
            assert first == [Result()] and retry == [Result(existed=True)]
        balances = await _balances(pool, ["b"])
        assert balances["b"] == Balances(credits_posted=3)
    finally:
        await poster.stop()
        await pool.close()


# --- the same decisions as the locking path ---------------------------------------


def _random_requests(rng: random.Random, prefix: str, n: int) -> list[list[Transfer]]:
    """Requests of every shape the rules know, on accounts named under `prefix`."""
    names = [f"{prefix}{k}" for k in ("world", "a", "b", "c", "gone")]
    out: list[list[Transfer]] = []
    ids: list[str] = []
    for i in range(n):
        size = rng.choice([1, 1, 1, 2, 3])
        batch = []
        for j in range(size):
            roll = rng.random()
            tid = f"{prefix}t{i}-{j}"
            debit, credit = rng.sample(names, 2)
            if roll < 0.5:
                t = Transfer(tid, debit, credit, rng.randint(1, 60))
            elif roll < 0.6:
                t = Transfer(tid, debit, credit, rng.randint(1, 60), flags=PENDING, timeout_s=60)
            elif roll < 0.7 and ids:
                t = Transfer(rng.choice(ids), debit, credit, rng.randint(1, 60))  # replay or clash
            elif roll < 0.8:
                t = Transfer(tid, debit, credit, rng.randint(1, 60), flags=LINKED)
            elif roll < 0.85:
                t = Transfer(tid, debit, debit, 1)  # same account
            elif roll < 0.9:
                t = Transfer(tid, debit, credit, 0)  # bad amount
            else:
                t = Transfer(tid, f"{prefix}world", credit, rng.randint(1, 60), reference="r")
            batch.append(t)
            ids.append(tid)
        out.append(batch)
    return out


@pytest.mark.asyncio
async def test_the_guarded_path_decides_as_the_locking_path(fresh_dsn: str) -> None:
    """The same requests, in the same order, through the poster and through
    the locking path on a twin set of accounts: the same results and totals."""
    await migrate(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=2, max_size=4)
    poster = Poster(pool, now)
    poster.start()
    try:
        flags = {
            "world": 0,
            "a": DMNEC,
            "b": DMNEC,
            "c": int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
        }
        async with pool.acquire() as conn:
            for prefix in ("g:", "l:"):
                await _accounts(conn, {prefix + k: f for k, f in flags.items()})
        rng = random.Random(16)
        requests = _random_requests(rng, "g:", 300)
        at = now()
        twin = [[_renamed(t) for t in batch] for batch in requests]
        async with pool.acquire() as conn:
            for batch, other in zip(requests, twin, strict=True):
                got = await poster.submit(batch)
                want = (await store.create_transfers(conn, other, at)).results
                assert got == want, (batch, got, want)
        known = poster.known
        assert known is not None and known.guarded > 100 and known.locking > 0
        got_balances = await _balances(pool, [f"g:{k}" for k in flags])
        want_balances = await _balances(pool, [f"l:{k}" for k in flags])
        assert {k[2:]: v for k, v in got_balances.items()} == {
            k[2:]: v for k, v in want_balances.items()
        }
    finally:
        await poster.stop()
        await pool.close()


def _renamed(t: Transfer) -> Transfer:
    """`t` on the twin accounts, under the twin's id."""

    def swap(value: str) -> str:
        return "l:" + value[2:] if value.startswith("g:") else value

    return dataclasses.replace(
        t,
        id=swap(t.id),
        debit_account_id=swap(t.debit_account_id),
        credit_account_id=swap(t.credit_account_id),
    )


@pytest.mark.asyncio
async def test_the_known_totals_start_over_past_their_bound(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forgetting mid-group (the bound reached by a group's first read) loses
    nothing of that group: it still decides on all its accounts."""
    monkeypatch.setattr(guarded, "KNOWN_MAX", 1)
    await migrate(fresh_dsn)
    pool = await asyncpg.create_pool(fresh_dsn, min_size=2, max_size=4)
    poster = Poster(pool, now)
    poster.start()
    try:
        async with pool.acquire() as conn:
            await _accounts(conn, {"world": 0, "a": 0, "b": 0, "c": 0})
        for i, target in enumerate(["a", "b", "a", "c", "b", "a"]):
            assert (await poster.submit([Transfer(f"t{i}", "world", target, i + 1)]))[0].ok
        known = poster.known
        assert known is not None and known.locking == 0
        balances = await _balances(pool, ["a", "b", "c"])
        assert [balances[n].credits_posted for n in "abc"] == [1 + 3 + 6, 2 + 5, 4]
    finally:
        await poster.stop()
        await pool.close()
