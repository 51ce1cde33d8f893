"""Big batches are decided as new first (store._post_streaming): replays in
them, whether the first attempt would write them or refuse them, get the
results a small batch gets, and the caller's transaction survives the
wasted attempt."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from core.ledger import store
from core.ledger.rules import (
    Account,
    AccountFlags,
    Outcome,
    Reason,
    Result,
    Transfer,
    TransferFlags,
)
from tests.support.kassactl import ledger_check
from tests.support.ledger import migrated_pool

ASSET = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BIG = 400
assert BIG > store.DECIDE_INLINE_MAX


def plain(i: int, amount: int = 1) -> Transfer:
    return Transfer(f"t{i}", "world", "capped", amount)


@pytest.mark.asyncio
async def test_a_replay_in_a_big_batch_is_found_whether_written_or_refused(
    fresh_dsn: str,
) -> None:
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await store.create_accounts(
                conn,
                [
                    Account("world", ASSET),
                    Account("capped", ASSET, flags=DMNEC),
                    Account("x", ASSET),
                ],
            )
            # "spend" drains capped: replayed, it would now be refused.
            first = [plain(i) for i in range(BIG)] + [Transfer("spend", "capped", "x", BIG)]
            outcome = await store.create_transfers(conn, first, AT)
            assert all(r.ok and not r.existed for r in outcome.results)
            before = await store.get_accounts(conn, ["world", "capped", "x"])

            # The whole batch again: the first attempt writes t0 and fails on the key.
            again = await store.create_transfers(conn, first, AT)
            assert all(r.ok and r.existed for r in again.results) and again.writes == []

            # Only a refused-if-new one is stored (capped holds 100 more by then,
            # not BIG): the COPY succeeds, the check after it finds "spend".
            fresh = [plain(BIG + i) for i in range(BIG)]
            batch = [*fresh[:100], Transfer("spend", "capped", "x", BIG), *fresh[100:]]
            mixed = await store.create_transfers(conn, batch, AT)
            assert mixed.results[100] == Result(existed=True)
            assert all(r.ok and not r.existed for r in mixed.results[:100] + mixed.results[101:])
            assert len(mixed.writes) == BIG

            # A stored id with another body, refused-if-new, in a linked chain.
            chain = [
                Transfer(f"c{i}", "world", "capped", 1, flags=TransferFlags.LINKED)
                for i in range(BIG)
            ]
            chain.append(Transfer("spend", "capped", "x", 10 * BIG))  # refused if new
            refused = await store.create_transfers(conn, chain, AT)
            assert refused.results[-1] == Result(Reason.ID_EXISTS_WITH_DIFFERENT_FIELD, "amount")
            assert all(r.reason == Reason.LINKED_EVENT_FAILED for r in refused.results[:-1])
            assert refused.writes == []
            after = await store.get_accounts(conn, ["world", "capped", "x"])
            assert after["x"] == before["x"]
            assert after["capped"].balances.credits_posted == 2 * BIG
            count = await conn.fetchval("SELECT count(*) FROM ledger_transfers")
            assert count == 2 * BIG + 1
    finally:
        await pool.close()
    assert ledger_check(fresh_dsn).returncode == 0


@pytest.mark.asyncio
async def test_a_replayed_big_batch_keeps_the_callers_transaction(fresh_dsn: str) -> None:
    """post() runs inside its caller's transaction (ingest's block): a
    replay's wasted attempt is rolled back to a savepoint, not the caller's
    work before it."""
    pool = await migrated_pool(fresh_dsn)
    try:
        async with pool.acquire() as conn:
            await store.create_accounts(
                conn, [Account("world", ASSET), Account("capped", ASSET, flags=DMNEC)]
            )
            batch = [plain(i, i + 1) for i in range(BIG)]
            await store.create_transfers(conn, batch, AT)
            async with conn.transaction():
                await store.create_accounts(conn, [Account("made-before", ASSET)])
                replayed = await store.post(conn, batch, AT)
                extra = await store.post(conn, [*batch, plain(BIG, 7)], AT)
            assert all(r.existed for r in replayed.results)
            assert [r.existed for r in extra.results] == [True] * BIG + [False]
            stored = await store.get_accounts(conn, ["made-before", "capped"])
            assert "made-before" in stored
            assert stored["capped"].balances.credits_posted == sum(range(1, BIG + 1)) + 7
    finally:
        await pool.close()
    assert ledger_check(fresh_dsn).returncode == 0


def mixed_batch(
    rng: random.Random, k: int, history: list[Transfer], open_: list[str]
) -> list[Transfer]:
    """300-500 transfers: plain ones, overdrafts of flagged accounts, linked
    chains (some failing), pendings and their posts and voids, and replays
    of earlier ones, with the same body or another."""
    out: list[Transfer] = []
    users = [f"u{n}" for n in range(6)]
    for i in range(rng.randint(300, 500)):
        tid = f"b{k}-{i}"
        roll = rng.random()
        if roll < 0.12 and history:
            old = rng.choice(history)
            if rng.random() < 0.3 and not old.pending_id:
                old = Transfer(
                    old.id,
                    old.debit_account_id,
                    old.credit_account_id,
                    old.amount + 1,
                    flags=old.flags,
                )
            out.append(old)
            continue
        if roll < 0.35:
            t = Transfer(tid, "world", rng.choice(users), rng.randint(1, 50))
        elif roll < 0.55:
            t = Transfer(tid, rng.choice(users), "sink", rng.randint(1, 80))
        elif roll < 0.65:
            t = Transfer(tid, "world", rng.choice(users), 1, flags=TransferFlags.LINKED)
        elif roll < 0.78:
            t = Transfer(
                tid, rng.choice(users), "sink", rng.randint(1, 30), flags=TransferFlags.PENDING
            )
            open_.append(tid)
        elif open_:
            pending = open_.pop(rng.randrange(len(open_)))
            flags = rng.choice([TransferFlags.POST_PENDING, TransferFlags.VOID_PENDING])
            t = Transfer(tid, flags=flags, pending_id=pending)
        else:
            t = Transfer(tid, "world", "sink", 1)
        out.append(t)
    if out[-1].flags & TransferFlags.LINKED:
        out.append(Transfer(f"b{k}-end", "world", "sink", 1))
    history += out
    return out


def renamed(t: Transfer, p: str) -> Transfer:
    def name(x: str) -> str:
        return f"{p}{x}" if x else x

    return Transfer(
        name(t.id),
        name(t.debit_account_id),
        name(t.credit_account_id),
        t.amount,
        t.asset,
        t.code,
        t.flags,
        name(t.pending_id),
        t.timeout_s,
        t.reference,
        t.user_data,
    )


def unnamed(
    outcome: Outcome, p: str
) -> tuple[list[Result], list[tuple[str, str, str, int, int, str]]]:
    def strip(x: str) -> str:
        return x.removeprefix(p)

    writes = [
        (
            strip(t.id),
            strip(t.debit_account_id),
            strip(t.credit_account_id),
            t.amount,
            t.flags,
            strip(t.pending_id),
        )
        for t in outcome.writes
    ]
    return outcome.results, writes


@pytest.mark.asyncio
async def test_big_batches_decide_as_small_ones_with_replays(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same sequence of batches, streamed (first as new, then checked)
    and inserted (every id looked up first): the same results, writes and
    totals."""
    pool = await migrated_pool(fresh_dsn)
    rng = random.Random(16)
    history: list[Transfer] = []
    open_: list[str] = []
    try:
        async with pool.acquire() as conn:
            names = ["world", "sink", *(f"u{n}" for n in range(6))]
            for p in "SI":
                await store.create_accounts(
                    conn,
                    [
                        Account(f"{p}{n}", ASSET, flags=DMNEC if n.startswith("u") else 0)
                        for n in names
                    ],
                )
            replays = 0
            for k in range(8):
                batch = mixed_batch(rng, k, history, open_)
                streamed = await store.create_transfers(conn, [renamed(t, "S") for t in batch], AT)
                monkeypatch.setattr(store, "DECIDE_INLINE_MAX", 10_000)
                inserted = await store.create_transfers(conn, [renamed(t, "I") for t in batch], AT)
                monkeypatch.undo()
                assert unnamed(streamed, "S") == unnamed(inserted, "I"), k
                replays += sum(r.existed for r in streamed.results)
            reasons = {r.reason for r in streamed.results}
            totals: dict[str, dict[str, object]] = {}
            for p in "SI":
                stored = await store.get_accounts(conn, [f"{p}{n}" for n in names])
                totals[p] = {n.removeprefix(p): a.balances for n, a in stored.items()}
    finally:
        await pool.close()
    assert totals["S"] == totals["I"]
    assert replays > 100
    assert {Reason.EXCEEDS_CREDITS, Reason.ID_EXISTS_WITH_DIFFERENT_FIELD} <= reasons
    assert ledger_check(fresh_dsn).returncode == 0
