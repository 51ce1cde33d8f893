"""The ledger's I/O: load and lock, let the rules decide, write in one statement.

A posting is two round trips inside the caller's transaction: one statement
locks the involved accounts in id order (so concurrent writers never
deadlock) and reads the stored transfers the batch names; one INSERT of all
accepted transfers (for a big batch a COPY, streamed while the rules decide
it), whose statement trigger moves the account totals once per account.
A big batch skips reading its own ids: it is decided as new inside a
savepoint and checked afterwards (`_post_streaming`).

The read of stored transfers in the locking statement uses the statement's
snapshot, so a concurrent writer that committed while we waited for a lock
may be unseen; the unique constraints (transfer id, one resolution per
pending transfer) then refuse our INSERT and `create_transfers` retries the
whole transaction, which sees it. Balances are always fresh: a row locked
FOR UPDATE is re-read at its latest version.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from core import metrics
from core.ledger.copy_rows import COLUMNS, RowEncoder
from core.ledger.rules import (
    Account,
    Balances,
    Outcome,
    Reason,
    Resolution,
    Result,
    Stored,
    Transfer,
    TransferFlags,
    account_differs,
    check_account,
    decide,
    expiry_id,
    referenced_ids,
)

RETRIES = 8
_POST = int(TransferFlags.POST_PENDING)

# $1 the accounts the batch names, $2 every stored transfer the rules need
# (the batch's ids and the pending ones it names), $3 the pending ones alone,
# whose accounts are locked too. Only a post or void needs the accounts of a
# stored transfer: a replay is compared field by field and touches none.
# (Looking the batch's ids up a second time, for their accounts, was ~8 ms
# of a 5,000-transfer batch's ~20 ms load.)
_LOAD = """
WITH wanted AS MATERIALIZED (
    SELECT unnest($1::text[]) AS id
    UNION
    SELECT unnest(ARRAY[debit_account_id, credit_account_id])
      FROM ledger_transfers WHERE id = ANY($3::text[])
), locked AS MATERIALIZED (
    SELECT a.id, a.asset, a.code, a.flags, a.user_data, a.debits_pending, a.debits_posted,
           a.credits_pending, a.credits_posted
      FROM ledger_accounts a WHERE a.id IN (SELECT id FROM wanted)
     ORDER BY a.id FOR UPDATE
)
SELECT true AS is_account, id, asset, code, flags, user_data, debits_pending, debits_posted,
       credits_pending, credits_posted, NULL::text AS debit_account_id,
       NULL::text AS credit_account_id, NULL::numeric AS amount, NULL::text AS pending_id,
       NULL::integer AS timeout_s, NULL::text AS reference, NULL::timestamptz AS create_time,
       NULL::text AS resolved_by, NULL::integer AS resolved_flags
  FROM locked
UNION ALL
SELECT false, t.id, t.asset, t.code, t.flags, t.user_data, NULL, NULL, NULL, NULL,
       t.debit_account_id, t.credit_account_id, t.amount, t.pending_id, t.timeout_s,
       t.reference, t.create_time, r.id, r.flags
  FROM ledger_transfers t LEFT JOIN ledger_transfers r ON r.pending_id = t.id
 WHERE t.id = ANY($2::text[])
"""

# The load of a batch that reads no stored transfer (a big batch's first
# attempt with nothing pending in it, a block of payments): its accounts alone,
# locked in the same id order as _LOAD's (so the two never deadlock), totals as
# text (int(str) is exact, and cheaper than asyncpg's Decimal and int of it).
# Against _LOAD with empty transfer arrays, 1,001 accounts, 40 runs each
# interleaved: server CPU 3.5 -> 1.9 ms (no CTEs to hash and materialize), wall
# with the rows decoded 6.0 -> 2.9 ms (9 columns a row instead of 19); all of
# it before the first COPY row, while the server has nothing else to do.
_LOAD_ACCOUNTS = """
SELECT id, asset, code, flags, user_data, debits_pending::text, debits_posted::text,
       credits_pending::text, credits_posted::text
  FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""

_INSERT = """
INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount, asset, code, flags,
                              pending_id, timeout_s, reference, user_data, create_time, expire_time)
SELECT u.id, u.debit, u.credit, u.amount, u.asset, u.code, u.flags, u.pending_id, u.timeout_s,
       u.reference, u.user_data, $12::timestamptz,
       CASE WHEN u.timeout_s > 0 THEN $12::timestamptz + make_interval(secs => u.timeout_s) END
  FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::integer[],
              $7::integer[], $8::text[], $9::integer[], $10::text[], $11::text[])
       AS u(id, debit, credit, amount, asset, code, flags, pending_id, timeout_s, reference,
            user_data)
"""


def _resolution(resolved_by: str | None, resolved_flags: int | None) -> Resolution:
    if resolved_by is None or resolved_flags is None:
        return Resolution.OPEN
    if resolved_flags & _POST:
        return Resolution.POSTED
    if resolved_by.startswith("expiry:"):
        return Resolution.EXPIRED
    return Resolution.VOIDED


def stored_of(row: asyncpg.Record) -> Stored:
    transfer = Transfer(
        id=row["id"],
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=int(row["amount"]),
        asset=row["asset"],
        code=row["code"],
        flags=row["flags"],
        pending_id=row["pending_id"] or "",
        timeout_s=row["timeout_s"],
        reference=row["reference"],
        user_data=row["user_data"],
    )
    return Stored(
        transfer, row["create_time"], _resolution(row["resolved_by"], row["resolved_flags"])
    )


def account_of(row: asyncpg.Record) -> Account:
    return Account(
        id=row["id"],
        asset=row["asset"],
        code=row["code"],
        flags=row["flags"],
        user_data=row["user_data"],
        balances=Balances(
            int(row["debits_pending"]),
            int(row["debits_posted"]),
            int(row["credits_pending"]),
            int(row["credits_posted"]),
        ),
    )


# Batches up to this size decide on the event loop (a thread hop costs more
# than their rules); larger ones in a worker thread.
DECIDE_INLINE_MAX = 256


async def post(conn: asyncpg.Connection, batch: Sequence[Transfer], now: datetime) -> Outcome:
    """Decides and writes a batch inside the caller's transaction.

    May raise asyncpg.UniqueViolationError when a concurrent writer stored
    one of the same ids or resolved the same pending transfer first; the
    caller's transaction is then aborted and can be retried.
    """
    account_ids = {t.debit_account_id for t in batch} | {t.credit_account_id for t in batch}
    account_ids.discard("")
    pending_ids = list({t.pending_id for t in batch if t.pending_id})
    if len(batch) > DECIDE_INLINE_MAX:
        outcome = await _post_streaming(conn, batch, sorted(account_ids), pending_ids, now)
    else:
        accounts, stored = await _load(
            conn, sorted(account_ids), list(referenced_ids(batch)), pending_ids
        )
        outcome = decide(batch, accounts, stored, now)
        if outcome.writes:
            await write(conn, outcome.writes, now)
    metrics.ledger_posted(outcome.results)
    return outcome


async def _load(
    conn: asyncpg.Connection,
    account_ids: list[str],
    transfer_ids: list[str],
    pending_ids: list[str],
) -> tuple[dict[str, Account], dict[str, Stored]]:
    """Locks and reads the accounts (and those of the pending transfers), and
    reads the stored transfers among `transfer_ids`, in one statement."""
    if not transfer_ids and not pending_ids:
        rows = await conn.fetch(_LOAD_ACCOUNTS, account_ids)
        return {row["id"]: account_of(row) for row in rows}, {}
    # The transfer ids unsorted (a millisecond for a big batch): the statement
    # locks the accounts in id order whatever the arrays' order.
    rows = await conn.fetch(_LOAD, account_ids, transfer_ids, pending_ids)
    accounts: dict[str, Account] = {}
    stored: dict[str, Stored] = {}
    for row in rows:
        if row["is_account"]:
            accounts[row["id"]] = account_of(row)
        else:
            stored[row["id"]] = stored_of(row)
    return accounts, stored


class _Replayed(Exception):
    """A transfer the optimistic attempt refused has an id already stored."""


_ANY_STORED = "SELECT EXISTS (SELECT 1 FROM ledger_transfers WHERE id = ANY($1::text[]))"


async def _post_streaming(
    conn: asyncpg.Connection,
    batch: Sequence[Transfer],
    account_ids: list[str],
    pending_ids: list[str],
    now: datetime,
) -> Outcome:
    """A big batch, decided on the assumption that none of its ids is stored
    yet (a new batch, the rule), then checked; if that was wrong, decided
    again knowing the stored ones.

    Looking the batch's own ids up before deciding costs an index probe per
    transfer (~7 ms of server CPU for 5,000), and the COPY's primary key
    probes each written id again anyway. So the first attempt reads only
    the accounts and the pending transfers the batch resolves, inside a
    savepoint. Its outcome is the one `decide` gives with the stored ids
    known, unless one of them is stored after all: a written one fails the
    COPY on the primary key (a replay, or a concurrent writer), and the ids
    it did not write (refused, or in a failed chain) are looked up once
    after it. Either way the savepoint is rolled back (its rows, locks and
    total changes with it) and the batch decided again as a small one is:
    the caller's transaction stays as it was, and a replayed batch costs
    one wasted attempt.
    """
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            accounts, stored = await _load(conn, account_ids, pending_ids, pending_ids)
            outcome = await _decide_streaming(conn, batch, accounts, stored, now)
            written = {t.id for t in outcome.writes}
            unwritten = [t.id for t in batch if t.id not in written]
            if unwritten and await conn.fetchval(_ANY_STORED, unwritten):
                raise _Replayed
            return outcome
    except (asyncpg.UniqueViolationError, _Replayed):
        pass
    accounts, stored = await _load(conn, account_ids, list(referenced_ids(batch)), pending_ids)
    return await _decide_streaming(conn, batch, accounts, stored, now)


async def _decide_streaming(
    conn: asyncpg.Connection,
    batch: Sequence[Transfer],
    accounts: dict[str, Account],
    stored: dict[str, Stored],
    now: datetime,
) -> Outcome:
    """Decides a big batch in a thread while its decided writes stream into
    the database: one COPY, so the posting trigger still runs once, on the
    whole batch, and moves each account's totals once.

    A big batch's rules take ~2 us a plain transfer (rules._PlainRun) and
    ~10-40 us any other, of pure Python; in a thread the event loop keeps
    serving other callers meanwhile, and the server inserts and indexes the
    rows decided so far on the other core instead of waiting for the last
    one (the write took as long as the rules). If the
    rules fail (a broken invariant raises before the last slice), the COPY is
    aborted, and with it the caller's transaction.
    """
    loop = asyncio.get_running_loop()
    slices: asyncio.Queue[bytes | None] = asyncio.Queue()
    encoder = RowEncoder(now)

    def emit(writes: Sequence[Transfer]) -> None:  # in the deciding thread
        data = encoder.encode(writes)
        loop.call_soon_threadsafe(slices.put_nowait, data)

    def run() -> Outcome:
        try:
            return decide(batch, accounts, stored, now, emit)
        finally:
            loop.call_soon_threadsafe(slices.put_nowait, None)

    deciding = asyncio.ensure_future(asyncio.to_thread(run))

    async def rows() -> AsyncIterator[bytes]:
        while (data := await slices.get()) is not None:
            yield data
        await deciding  # the rules' failure, if any, aborts the COPY here

    try:
        await conn.copy_to_table("ledger_transfers", source=rows(), columns=COLUMNS)
        return await deciding
    finally:
        # If the COPY failed first (a lost race), the rules' result is moot:
        # whenever they end, their exception (if any) counts as seen.
        deciding.add_done_callback(_consume)


def _consume(future: asyncio.Future[Outcome]) -> None:
    if not future.cancelled():
        future.exception()


def transfer_columns(writes: Sequence[Transfer]) -> tuple[list[Any], ...]:
    """The eleven column arrays an `unnest` insert of transfers takes, in the
    order of _INSERT's $1..$11 (the guarded path's statement takes them, row
    by row, as JSON: guarded._writes_json)."""
    return (
        [t.id for t in writes],
        [t.debit_account_id for t in writes],
        [t.credit_account_id for t in writes],
        [int(t.amount) for t in writes],
        [t.asset for t in writes],
        [t.code for t in writes],
        [int(t.flags) for t in writes],
        [t.pending_id or None for t in writes],
        [t.timeout_s for t in writes],
        [t.reference for t in writes],
        [t.user_data for t in writes],
    )


async def write(conn: asyncpg.Connection, writes: Sequence[Transfer], now: datetime) -> None:
    await conn.execute(_INSERT, *transfer_columns(writes), now)


async def create_transfers(
    conn: asyncpg.Connection, batch: Sequence[Transfer], now: datetime
) -> Outcome:
    """Posts a batch in its own transaction on `conn`, retrying lost races."""
    for attempt in range(RETRIES):
        try:
            async with conn.transaction():
                return await post(conn, batch, now)
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


# --- accounts ---------------------------------------------------------------------

_INSERT_ACCOUNTS = """
INSERT INTO ledger_accounts (id, asset, code, flags, user_data)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[], $5::text[])
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


async def create_accounts(conn: asyncpg.Connection, accounts: Sequence[Account]) -> list[Result]:
    """Creates accounts; an existing id with the same fields is accepted again."""
    results: list[Result | None] = [check_account(a) for a in accounts]
    first: dict[str, int] = {}
    fresh: list[Account] = []
    for i, a in enumerate(accounts):
        if results[i] is None and a.id not in first:
            first[a.id] = i
            fresh.append(a)
    created = await _insert_accounts(conn, fresh)
    existing = await get_accounts(
        conn, [a.id for a, r in zip(accounts, results, strict=True) if r is None]
    )
    out: list[Result] = []
    for i, a in enumerate(accounts):
        result = results[i]
        if result is None:
            stored = existing[a.id]
            differing = account_differs(a, stored)
            if differing is not None:
                result = Result(Reason.ID_EXISTS_WITH_DIFFERENT_FIELD, differing)
            else:
                result = Result(existed=not (a.id in created and first[a.id] == i))
        out.append(result)
    return out


async def get_accounts(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, Account]:
    rows = await conn.fetch(
        """SELECT id, asset, code, flags, user_data, debits_pending, debits_posted,
                  credits_pending, credits_posted
             FROM ledger_accounts WHERE id = ANY($1::text[])""",
        list(ids),
    )
    return {r["id"]: account_of(r) for r in rows}


async def ensure_accounts(conn: asyncpg.Connection, accounts: Sequence[Account]) -> None:
    """Creates system accounts on first use (no-op for those that exist)."""
    await _insert_accounts(conn, accounts)


async def _insert_accounts(conn: asyncpg.Connection, accounts: Sequence[Account]) -> set[str]:
    """Inserts the accounts not yet stored; returns the ids it created."""
    if not accounts:
        return set()
    rows = await conn.fetch(
        _INSERT_ACCOUNTS,
        [a.id for a in accounts],
        [a.asset for a in accounts],
        [a.code for a in accounts],
        [int(a.flags) for a in accounts],
        [a.user_data for a in accounts],
    )
    return {r["id"] for r in rows}


async def expire_due(conn: asyncpg.Connection, now: datetime, limit: int = 1000) -> int:
    """Voids pending transfers past their timeout; returns how many."""
    due = await conn.fetch(
        """SELECT p.id FROM ledger_transfers p
            WHERE p.expire_time <= $1
              AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = p.id)
            ORDER BY p.expire_time LIMIT $2""",
        now,
        limit,
    )
    if not due:
        return 0
    # A void of each, by its own id: the rules write the expiry voids first.
    probes = [
        Transfer(
            id=expiry_id(r["id"]) + ":probe",
            flags=int(TransferFlags.VOID_PENDING),
            pending_id=r["id"],
        )
        for r in due
    ]
    outcome = await create_transfers(conn, probes, now)
    return sum(1 for t in outcome.writes if t.id.startswith("expiry:"))
