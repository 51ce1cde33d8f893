"""Posts a small group in one autocommit statement, decided on balances the
poster already knows, with the database verifying them under lock.

Why: the locking path (store.create_transfers) is four round trips per
group -- BEGIN, the locking read, the INSERT, COMMIT -- and with one writer
the group's latency is what bounds single-transfer RPCs (32 closed-loop
clients wait on it). The poster is the only writer of most groups' accounts,
so it usually knows their balances already: the ones it read or wrote last.

How it stays exact: the rules decide in Python exactly as on the locking
path (same `decide`, on the same inputs), and one statement then
1. locks the batch's accounts FOR UPDATE in id order (as the locking path,
   so the two never deadlock) -- READ COMMITTED re-reads a locked row at its
   latest committed version --,
2. checks that every account's four totals are the ones the rules decided
   on, and that none of the batch's ids is stored (the rules decided with no
   stored transfers; only batches that resolve no pending transfer come this
   way, so the batch's own ids are all it references),
3. inserts the decided writes only if both hold, in the same statement, so
   the locks are held until it commits; the posting trigger and the CHECKs
   stay the last line, as on the other path.
If the totals moved (another process, or another path of this one, posted
to an account), nothing is written and the statement returns the locked
totals: the group is decided again on them, a few times, then handed to the
locking path. A stored id (a replay) goes to the locking path at once, which
reads it. A concurrent writer that stores one of the ids after this
statement's snapshot makes the INSERT fail on the primary key; that too
goes to the locking path (as does a deadlock with a bigger transaction
waiting on the same accounts). Autocommit: a lost connection leaves the group
either wholly written or not at all, and its retry finds the ids stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from core import metrics
from core.ledger import store
from core.ledger.rules import Account, Balances, Outcome, Transfer, decide

# Decided again on the totals a miss returned at most this many times
# before the group takes the locking path (which waits instead of retrying).
ATTEMPTS = 3
# The known totals are a cache, bounded: past this many accounts it starts over.
KNOWN_MAX = 100_000

# The group travels as two JSON texts (the writes, the totals decided on) and two
# id arrays: asyncpg encodes each element of an array parameter on its own (an
# isinstance check and a codec call per element), and a group's eleven column
# arrays and four totals arrays were most of the poster's CPU. Measured (groups of
# 12 single transfers on a 60,000-transfer ledger, six rounds alternating with the
# arrays in one process): the poster's thread 72 -> 64 us per posting (5 of 6 rounds
# lower), PostgreSQL 107 -> 103 us. Amounts (JSON numbers) and totals (strings) are
# read back as numeric: exact at any size. A statement that writes returns its verdict row alone;
# the locked totals come back only when they were not the ones decided on.
_GUARDED = """
WITH locked AS MATERIALIZED (
    SELECT id, debits_pending, debits_posted, credits_pending, credits_posted
      FROM ledger_accounts WHERE id = ANY($2::text[]) ORDER BY id FOR UPDATE
), expected AS MATERIALIZED (
    SELECT a->>0 AS id, (a->>1)::numeric AS dp, (a->>2)::numeric AS dpo,
           (a->>3)::numeric AS cp, (a->>4)::numeric AS cpo
      FROM jsonb_array_elements($3::jsonb) AS a
), verdict AS MATERIALIZED (
    SELECT (SELECT count(*)
              FROM locked l
              JOIN expected e
                ON e.id = l.id AND l.debits_pending = e.dp AND l.debits_posted = e.dpo
               AND l.credits_pending = e.cp AND l.credits_posted = e.cpo)
           = cardinality($2::text[]) AS totals_known,
           NOT EXISTS (SELECT 1 FROM ledger_transfers WHERE id = ANY($4::text[])) AS ids_new
), written AS (
    INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount, asset, code,
                                  flags, pending_id, timeout_s, reference, user_data,
                                  create_time, expire_time)
    SELECT w->>0, w->>1, w->>2, (w->>3)::numeric, w->>4, (w->>5)::integer, (w->>6)::integer,
           w->>7, (w->>8)::integer, w->>9, w->>10, $1::timestamptz,
           CASE WHEN (w->>8)::integer > 0
                THEN $1::timestamptz + make_interval(secs => (w->>8)::integer) END
      FROM jsonb_array_elements($5::jsonb) AS w
     WHERE (SELECT totals_known AND ids_new FROM verdict)
    RETURNING 1
)
SELECT v.totals_known, v.ids_new, (SELECT count(*) FROM written) AS written,
       l.id, l.debits_pending, l.debits_posted, l.credits_pending, l.credits_posted
  FROM verdict v LEFT JOIN locked l ON NOT v.totals_known
"""


def eligible(batch: Sequence[Transfer]) -> bool:
    """Whether a batch may be decided with no stored transfers loaded: it
    resolves no pending transfer, and is small enough to decide inline."""
    return len(batch) <= store.DECIDE_INLINE_MAX and not any(t.pending_id for t in batch)


class KnownBalances:
    """The poster's knowledge of its accounts, and the one-statement path using it.

    Only the poster's single worker uses an instance (no locking here): every
    value is only a guess that the database checks before anything is written.
    """

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        # What each path did, for the tests and the benchmark.
        self.guarded = 0  # groups written by the one statement
        self.misses = 0  # statements that found other totals
        self.locking = 0  # groups that took the locking path

    def forget(self) -> None:
        self._accounts.clear()

    def _remember(self, accounts: Iterable[Account]) -> None:
        if len(self._accounts) > KNOWN_MAX:
            self._accounts.clear()
        for a in accounts:
            self._accounts[a.id] = a

    async def create_transfers(
        self, conn: asyncpg.Connection, batch: Sequence[Transfer], now: datetime
    ) -> Outcome:
        """Posts a batch as store.create_transfers does (its own transaction on
        `conn`, outside any other), in one round trip when the totals are known.

        On an exception nothing is known any more (the statement may have
        committed before the connection was lost).
        """
        try:
            outcome = await self._guarded(conn, batch, now) if eligible(batch) else None
            if outcome is None:
                self.locking += 1
                outcome = await store.create_transfers(conn, batch, now)
            return outcome
        except BaseException:
            self.forget()
            raise

    async def _guarded(
        self, conn: asyncpg.Connection, batch: Sequence[Transfer], now: datetime
    ) -> Outcome | None:
        """The one-statement posting; None when the locking path must decide."""
        ids = {t.debit_account_id for t in batch} | {t.credit_account_id for t in batch}
        ids.discard("")
        account_ids = sorted(ids)
        known = {i: self._accounts[i] for i in account_ids if i in self._accounts}
        missing = [i for i in account_ids if i not in known]
        if missing:
            found = await store.get_accounts(conn, missing)
            known.update(found)
            self._remember(found.values())
            if len(found) < len(missing):
                return None  # an unknown account: refused by the locking path, which reads it
        transfer_ids = sorted({t.id for t in batch})
        for _ in range(ATTEMPTS):
            outcome = decide(batch, known, {}, now)
            try:
                rows = await _write(conn, outcome.writes, known, account_ids, transfer_ids, now)
            except asyncpg.UniqueViolationError:
                return None  # stored meanwhile by another writer: the locking path reads it
            except asyncpg.DeadlockDetectedError:
                # Waiting on such a writer's id while it waits on our accounts
                # (a bigger transaction of another path): nothing was written;
                # the locking path retries it as it retries its own.
                return None
            first = rows[0]
            if first["totals_known"] and first["ids_new"]:
                assert first["written"] == len(outcome.writes), (first, outcome.writes)
                self._remember(_after(known, outcome))
                self.guarded += 1
                metrics.ledger_posted(outcome.results)
                return outcome
            assert first["written"] == 0, first
            if not first["ids_new"]:
                return None  # a replay: the locking path reads the stored transfers
            self.misses += 1
            for r in rows:
                if r["id"] is not None:
                    known[r["id"]] = _with_totals(known[r["id"]], r)
            self._remember(known.values())
        return None


async def _write(
    conn: asyncpg.Connection,
    writes: Sequence[Transfer],
    known: dict[str, Account],
    account_ids: list[str],
    transfer_ids: list[str],
    now: datetime,
) -> list[asyncpg.Record]:
    totals = []
    for i in account_ids:
        b = known[i].balances
        totals.append(
            [
                i,
                str(b.debits_pending),
                str(b.debits_posted),
                str(b.credits_pending),
                str(b.credits_posted),
            ]
        )
    rows: list[asyncpg.Record] = await conn.fetch(
        _GUARDED, now, account_ids, json.dumps(totals), transfer_ids, _writes_json(writes)
    )
    assert rows, "the verdict row is always there"
    return rows


def _writes_json(writes: Sequence[Transfer]) -> str:
    """The writes as the statement's $5: one array per transfer, its columns in
    store.transfer_columns' order (the one place that order is written). Amounts
    are JSON numbers; jsonb keeps a number as numeric, so `->>` gives its digits
    back exactly at any size."""
    return json.dumps(list(zip(*store.transfer_columns(writes), strict=True)))


def _after(known: dict[str, Account], outcome: Outcome) -> list[Account]:
    """The accounts' totals once the outcome's writes are stored."""
    out = []
    for account_id, a in known.items():
        delta = outcome.deltas.get(account_id)
        out.append(a if delta is None else _account(a, a.balances + delta))
    return out


def _with_totals(a: Account, row: asyncpg.Record) -> Account:
    return _account(
        a,
        Balances(
            int(row["debits_pending"]),
            int(row["debits_posted"]),
            int(row["credits_pending"]),
            int(row["credits_posted"]),
        ),
    )


def _account(a: Account, balances: Balances) -> Account:
    return Account(a.id, a.asset, a.code, a.flags, balances, a.user_data)
