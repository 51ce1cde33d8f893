"""A reconciliation run: read the ledger and the core's records (one
snapshot), read the chain at the settled height through the adapter, let
`decide` compare, let `store` write the result.

The ledger's custody per deposit address is derived from the posted
transfers that touch `platform:custody:{asset}`, each attributed to an
address by its reference (an invoice's deposit address; a sweep's source,
or its gas funding's destination). Custody a reference cannot place is
reported as `ledger` (unattributed). The hot key's and the treasury's are
their own accounts (`…:hot`, `…:treasury`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg
import grpc

from core.domain import assets as asset_ids
from core.leadership.fence import Fence
from core.ledger import accounts as ledger_accounts
from core.reconcile import decide, store
from core.reconcile.decide import Location, Movement, MovementKind, Place
from core.reconcile.settings import ReconcileSettings
from kassa.chain.v1 import adapter_pb2, adapter_pb2_grpc

log = logging.getLogger("kassa.reconcile")
# The adapter's limits per request (adapters/evm/balances.py).
BALANCES_PER_CALL = 10_000
HASHES_PER_CALL = 1_000
CALLS_IN_FLIGHT = 2
CALL_TIMEOUT_S = 120.0
_FINAL_PAYOUT = ("confirmed", "failed", "cancelled")


class Tier(Protocol):
    @property
    def confirmations(self) -> int: ...


class Chain(Protocol):
    """What a run needs of a [[chains]] entry."""

    @property
    def id(self) -> str: ...

    @property
    def confirmations(self) -> int: ...

    @property
    def tiers(self) -> Sequence[Tier]: ...


class AssetEntry(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def chain(self) -> str: ...


class Configured(Protocol):
    """The view of the core's configuration a run takes (core.config.Config is
    one); areas do not import the composed configuration."""

    @property
    def chains(self) -> Sequence[Chain]: ...

    @property
    def assets(self) -> Sequence[AssetEntry]: ...


class ReconcileError(RuntimeError):
    """The chain cannot be reconciled now (no cursor yet, no adapter)."""


class ReconcileUnavailable(ReconcileError):
    """The adapter or the signer did not answer; a later run may succeed."""


def _native(chain: str) -> str:
    return asset_ids.native(chain)


def _loc(asset: str, place: Place, address: str | None) -> Location | None:
    return Location(asset, place, address.lower()) if address else None


class Reconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        config: Configured,
        settings: ReconcileSettings,
        adapters: Mapping[str, adapter_pb2_grpc.ChainAdapterServiceStub],
        hot_address: Callable[[], Awaitable[str | None]],
        treasuries: Mapping[str, str],
        clock: Callable[[], datetime],
    ) -> None:
        self.pool = pool
        self.config = config
        self.settings = settings
        self.adapters = adapters
        self.hot_address = hot_address
        self.treasuries = {k: v.lower() for k, v in treasuries.items()}
        self.clock = clock
        self._locks = {c.id: asyncio.Lock() for c in config.chains}
        # Where the last run spent its time (seconds per phase), for logs and the bench.
        self.last_timings_s: dict[str, float] = {}

    def chain(self, chain_id: str) -> Chain | None:
        return next((c for c in self.config.chains if c.id == chain_id), None)

    async def run(self, fence: Fence | None = None) -> None:
        """Reconciles every chain each interval_s (0: on demand only); run by the
        replica that leads `reconcile` (core/leadership), whose fence each
        scheduled run's write checks."""
        if self.settings.interval_s <= 0:
            return
        while True:
            await asyncio.sleep(self.settings.interval_s)
            for chain in self.config.chains:
                try:
                    await self.run_once(chain.id, "schedule", fence=fence)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reconciliation failed", extra={"chain": chain.id})

    async def run_once(
        self,
        chain_id: str,
        trigger: str,
        request_id: str = "",
        incremental: bool = False,
        fence: Fence | None = None,
    ) -> str:
        """Reconciles `chain_id` now; returns the stored run's id (the first
        run's, for a repeated request_id). Incremental: only what was touched
        since the chain's last run (a full run when there is none)."""
        chain = self.chain(chain_id)
        adapter = self.adapters.get(chain_id)
        if chain is None or adapter is None:
            raise ReconcileError(f"{chain_id} is not a configured chain")
        if request_id:
            async with self.pool.acquire() as conn:
                earlier = await store.by_request(conn, request_id)
            if earlier is not None:
                return earlier
        async with self._locks[chain_id]:
            try:
                result = await self._reconcile(chain, adapter, trigger, request_id, incremental)
            except grpc.aio.AioRpcError as exc:
                raise ReconcileUnavailable(
                    f"{chain_id}: a dependency did not answer: {exc.code().name}: {exc.details()}"
                ) from None
            async with self.pool.acquire() as conn, conn.transaction():
                if fence is not None:
                    await fence.check(conn)
                if not await store.save(conn, result):
                    earlier = await store.by_request(conn, request_id)
                    assert earlier is not None
                    return earlier
        log.info(
            "reconciled",
            extra={
                "chain": chain_id,
                "run": result.id,
                "height": result.height,
                "balances": result.balances_compared,
                "transactions": result.transactions_compared,
                "unexplained": result.unexplained_count,
                "incremental": result.incremental,
                "timings_s": {k: round(v, 3) for k, v in self.last_timings_s.items()},
            },
        )
        return result.id

    # -- reading -------------------------------------------------------------

    async def _reconcile(
        self,
        chain: Chain,
        adapter: adapter_pb2_grpc.ChainAdapterServiceStub,
        trigger: str,
        request_id: str,
        incremental: bool = False,
    ) -> store.RunResult:
        start = self.clock()
        t0 = time.perf_counter()
        hot = await self.hot_address()
        treasury = self.treasuries.get(chain.id)
        # One snapshot: the ledger, payments and payouts agree with each other.
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            cursor = await conn.fetchval(
                "SELECT height FROM chain_cursors WHERE chain = $1", chain.id
            )
            if cursor is None:
                raise ReconcileError(f"{chain.id} has no applied block yet")
            height = decide.settled_height(
                int(cursor), [chain.confirmations, *(t.confirmations for t in chain.tiers)]
            )
            ledger_seq = int(
                await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger_transfers")
            )
            gaps = list(await conn.fetchval(_LEDGER_GAPS, ledger_seq, IN_FLIGHT_TRANSFERS))
            since, only = None, None
            if incremental:
                since, only = await _touched_since_last(conn, chain.id)
            snapshot = await _Snapshot.read(
                conn, chain.id, height, hot, treasury, self.config, only
            )
        t1 = time.perf_counter()
        found = await _transactions(adapter, snapshot.tx_hashes())
        block, chain_balances = await _balances(adapter, height, snapshot.chain_locations)
        t2 = time.perf_counter()
        movements, expected_pairs = snapshot.movements(found)
        outcome = decide.compare_balances(
            snapshot.ledger, chain_balances, movements, height, snapshot.baselines
        )
        mismatches: list[store.TransactionDifference] = []
        proven: list[tuple[str, str]] = list(snapshot.proven_without_tx(found, height))
        for e, asset_address in expected_pairs:
            verdict, detail = decide.check_transaction(e, _chain_tx(found.get(e.tx_hash)), height)
            match verdict:
                case decide.Verdict.PROVEN:
                    proven.append((e.resource, e.tx_hash))
                case decide.Verdict.NOT_YET:
                    pass
                case decide.Verdict.MISMATCH:
                    mismatches.append(
                        store.TransactionDifference(
                            e.resource, e.tx_hash, e.asset, asset_address, detail
                        )
                    )
        t3 = time.perf_counter()
        self.last_timings_s = {"database": t1 - t0, "chain": t2 - t1, "compare": t3 - t2}
        return store.RunResult(
            chain=chain.id,
            trigger=trigger,
            request_id=request_id,
            height=height,
            block_hash=block.hash,
            locations_compared=len({(loc.place, loc.address) for loc in chain_balances}),
            balances_compared=len(chain_balances),
            transactions_compared=len(expected_pairs),
            balances=outcome.differences,
            transactions=mismatches,
            new_baselines=outcome.new_baselines,
            proven=proven,
            start_time=start,
            finish_time=self.clock(),
            ledger_seq=ledger_seq,
            ledger_gaps=gaps,
            since_run=since,
        )


def _chain_tx(t: adapter_pb2.TransactionTransfers | None) -> decide.ChainTransaction | None:
    if t is None:
        return None
    status = {
        adapter_pb2.TRANSACTION_STATUS_SUCCEEDED: "succeeded",
        adapter_pb2.TRANSACTION_STATUS_REVERTED: "reverted",
        adapter_pb2.TRANSACTION_STATUS_PENDING: "pending",
    }.get(t.status, "unknown")
    return decide.ChainTransaction(
        t.tx_hash,
        status,
        t.block.height if t.HasField("block") else None,
        tuple(
            decide.ChainTransfer(x.index, x.asset, x.from_address, x.to_address, int(x.amount))
            for x in t.transfers
        ),
    )


def _mined_height(t: adapter_pb2.TransactionTransfers | None) -> int | None:
    if t is None or not t.HasField("block"):
        return None
    if t.status not in (
        adapter_pb2.TRANSACTION_STATUS_SUCCEEDED,
        adapter_pb2.TRANSACTION_STATUS_REVERTED,
    ):
        return None
    return int(t.block.height)


async def _balances(
    adapter: adapter_pb2_grpc.ChainAdapterServiceStub, height: int, locations: Sequence[Location]
) -> tuple[adapter_pb2.BlockCursor, dict[Location, int]]:
    gate = asyncio.Semaphore(CALLS_IN_FLIGHT)

    async def part(chunk: Sequence[Location]) -> adapter_pb2.GetBalancesResponse:
        async with gate:
            answer: adapter_pb2.GetBalancesResponse = await adapter.GetBalances(
                adapter_pb2.GetBalancesRequest(
                    height=height,
                    queries=[
                        adapter_pb2.BalanceQuery(address=loc.address, asset=loc.asset)
                        for loc in chunk
                    ],
                ),
                timeout=CALL_TIMEOUT_S,
            )
            return answer

    chunks = [
        locations[i : i + BALANCES_PER_CALL] for i in range(0, len(locations), BALANCES_PER_CALL)
    ]
    if not chunks:
        chunks = [[]]
    answers = await asyncio.gather(*(part(c) for c in chunks))
    blocks = {(a.block.height, a.block.hash) for a in answers}
    # Every part read the same block: a reorg at the height would have changed its hash.
    if len(blocks) != 1:
        raise ReconcileError(f"the block at {height} changed during the run: {sorted(blocks)}")
    balances: dict[Location, int] = {}
    for chunk, answer in zip(chunks, answers, strict=True):
        assert len(answer.balances) == len(chunk)
        for loc, value in zip(chunk, answer.balances, strict=True):
            balances[loc] = int(value)
    return answers[0].block, balances


async def _transactions(
    adapter: adapter_pb2_grpc.ChainAdapterServiceStub, hashes: Sequence[str]
) -> dict[str, adapter_pb2.TransactionTransfers]:
    gate = asyncio.Semaphore(CALLS_IN_FLIGHT)

    async def part(chunk: Sequence[str]) -> list[adapter_pb2.TransactionTransfers]:
        async with gate:
            answer = await adapter.GetTransfers(
                adapter_pb2.GetTransfersRequest(tx_hashes=list(chunk)), timeout=CALL_TIMEOUT_S
            )
        return list(answer.transactions)

    unique = sorted(set(hashes))
    parts = await asyncio.gather(
        *(part(unique[i : i + HASHES_PER_CALL]) for i in range(0, len(unique), HASHES_PER_CALL))
    )
    return {t.tx_hash: t for p in parts for t in p}


# -- the database side of one run ---------------------------------------------

# Every deposit location with its ledger custody (NULL: none booked), in one
# pass: each invoice's address in the invoice's asset and, for tokens, in the
# native coin (the gas a sweep left); plus custody attributed to an address
# no invoice has, and custody no reference places (address NULL).
_DEPOSITS = """
WITH custody AS (
    SELECT lower(coalesce(i.deposit_address,
                          CASE WHEN t.debit_account_id = 'platform:custody:' || t.asset
                               THEN s.destination ELSE s.source_address END)) AS address,
           t.asset,
           sum(CASE WHEN t.debit_account_id = 'platform:custody:' || t.asset
                    THEN t.amount ELSE -t.amount END) AS balance
      FROM (SELECT t.debit_account_id, t.amount, t.asset,
                   -- A post carries no reference of its own: its pending transfer's.
                   coalesce(nullif(t.reference, ''), p.reference, '') AS reference
              FROM ledger_transfers t
              LEFT JOIN ledger_transfers p ON p.id = t.pending_id
             -- $3: the chain's deposit custody accounts, as constants the planner
             -- can estimate (an expression over the row's asset it cannot).
             WHERE (t.debit_account_id = ANY($3::text[]) OR t.credit_account_id = ANY($3::text[]))
               AND t.flags & 10 = 0  -- posted: plain transfers and posts of pending ones
               AND t.asset LIKE $1 || '/%') t
      LEFT JOIN invoices i
             ON t.reference LIKE 'merchants/%/invoices/%'
            AND i.id = split_part(t.reference, '/', 4)
      LEFT JOIN payouts s
             ON t.reference LIKE 'sweeps/%' AND s.id = split_part(t.reference, '/', 2)
     GROUP BY 1, 2
), addresses AS (
    SELECT lower(deposit_address) AS address, asset FROM invoices WHERE chain = $1
    UNION ALL
    SELECT lower(deposit_address), $2 FROM invoices WHERE chain = $1 AND asset <> $2
)
SELECT coalesce(a.address, c.address) AS address, coalesce(a.asset, c.asset) AS asset,
       c.balance::text AS balance
  FROM addresses a FULL JOIN custody c ON c.address = a.address AND c.asset = a.asset
"""

# Incremental runs: custody of the touched addresses only, found through the
# references of their invoices and sweeps (ledger_transfers_by_reference, and
# posts through their pending transfer), not by aggregating the whole ledger.
# $4: the touched addresses, lower case. Custody with no reference (the
# "ledger" location) is left to full runs. Invoices are found by their
# address as stored (lower case, core/chain/hd.py), through its unique index.
_DEPOSITS_TOUCHED = """
WITH touched AS (SELECT DISTINCT unnest($4::text[]) AS address),
names AS (
    SELECT 'merchants/' || i.merchant_id || '/invoices/' || i.id AS reference
      FROM invoices i JOIN touched w ON w.address = i.deposit_address
     WHERE i.chain = $1
    UNION
    SELECT 'sweeps/' || s.id FROM payouts s
     WHERE s.chain = $1 AND s.kind IN ('sweep', 'gas_funding')
       AND (lower(s.source_address) IN (SELECT address FROM touched)
            OR lower(s.destination) IN (SELECT address FROM touched))
), moved AS (
    SELECT t.debit_account_id, t.credit_account_id, t.amount, t.asset, t.flags, t.reference
      FROM ledger_transfers t WHERE t.reference IN (SELECT reference FROM names)
    UNION ALL
    SELECT c.debit_account_id, c.credit_account_id, c.amount, c.asset, c.flags, p.reference
      FROM ledger_transfers p JOIN ledger_transfers c ON c.pending_id = p.id
     WHERE p.reference IN (SELECT reference FROM names) AND c.reference = ''
), custody AS (
    SELECT lower(coalesce(i.deposit_address,
                          CASE WHEN t.debit_account_id = 'platform:custody:' || t.asset
                               THEN s.destination ELSE s.source_address END)) AS address,
           t.asset,
           sum(CASE WHEN t.debit_account_id = 'platform:custody:' || t.asset
                    THEN t.amount ELSE -t.amount END) AS balance
      FROM moved t
      LEFT JOIN invoices i
             ON t.reference LIKE 'merchants/%/invoices/%'
            AND i.id = split_part(t.reference, '/', 4)
      LEFT JOIN payouts s
             ON t.reference LIKE 'sweeps/%' AND s.id = split_part(t.reference, '/', 2)
     WHERE (t.debit_account_id = ANY($3::text[]) OR t.credit_account_id = ANY($3::text[]))
       AND t.flags & 10 = 0
       AND t.asset LIKE $1 || '/%'
     GROUP BY 1, 2
), addresses AS (
    SELECT i.deposit_address AS address, i.asset
      FROM invoices i JOIN touched w ON w.address = i.deposit_address WHERE i.chain = $1
    UNION ALL
    SELECT i.deposit_address, $2
      FROM invoices i JOIN touched w ON w.address = i.deposit_address
     WHERE i.chain = $1 AND i.asset <> $2
)
SELECT coalesce(a.address, c.address) AS address, coalesce(a.asset, c.asset) AS asset,
       c.balance::text AS balance
  FROM addresses a FULL JOIN custody c ON c.address = a.address AND c.asset = a.asset
 WHERE coalesce(a.address, c.address) IN (SELECT address FROM touched)
"""

# Transfer ids are given at insert, not at commit: ids below the newest one a
# snapshot sees may still be in flight then. The snapshot records the missing
# ids among the last IN_FLIGHT_TRANSFERS (in flight, or rolled back) and the
# next incremental run looks at those as well as at every newer one.
IN_FLIGHT_TRANSFERS = 10_000
_LEDGER_GAPS = """
SELECT coalesce(array_agg(s ORDER BY s), '{}') FROM (
    SELECT s FROM generate_series(greatest($1::bigint - $2::bigint + 1, 1), $1::bigint) s
    EXCEPT
    SELECT seq FROM ledger_transfers WHERE seq BETWEEN $1::bigint - $2::bigint + 1 AND $1::bigint
) missing
"""

# What changed since the last run: payments mined above its height (one
# reorged out or newly seen changes custody, a booking found below); sweeps
# and gas funding (update_time with TOUCHED_SLACK_S: a row's is its
# transaction's start); custody bookings it did not see; and every location
# that differed in it, explained or not (timing differences are re-checked).
TOUCHED_SLACK_S = 60
_TOUCHED = """
WITH recent AS (
    SELECT coalesce(nullif(t.reference, ''), p.reference, '') AS reference
      FROM ledger_transfers t LEFT JOIN ledger_transfers p ON p.id = t.pending_id
     WHERE (t.seq > $4 OR t.seq = ANY($6::bigint[])) AND t.asset LIKE $1 || '/%'
)
SELECT lower(i.deposit_address) AS address
  FROM payments p JOIN invoices i ON i.id = p.invoice_id
 WHERE p.chain = $1 AND p.block_height > $3
UNION
SELECT lower(a) FROM payouts s, unnest(ARRAY[s.source_address, s.destination]) a
 WHERE s.chain = $1 AND s.kind IN ('sweep', 'gas_funding') AND s.update_time >= $2
   AND a IS NOT NULL
UNION
SELECT lower(i.deposit_address) FROM recent r
  JOIN invoices i ON r.reference LIKE 'merchants/%/invoices/%'
                 AND i.id = split_part(r.reference, '/', 4) AND i.chain = $1
UNION
SELECT lower(a) FROM recent r
  JOIN payouts s ON r.reference LIKE 'sweeps/%' AND s.id = split_part(r.reference, '/', 2),
       unnest(ARRAY[s.source_address, s.destination]) a
 WHERE a IS NOT NULL
UNION
SELECT d.address FROM reconciliation_differences d
 WHERE d.run_id = $5 AND d.location = 'deposit'
"""


async def _touched_since_last(
    conn: asyncpg.Connection, chain: str
) -> tuple[str | None, list[str] | None]:
    """(the last run's id, the deposit addresses touched since it), or
    (None, None) when there is no run to continue from: then a full run."""
    last = await conn.fetchrow(
        """SELECT id, start_time, height, ledger_seq, ledger_gaps FROM reconciliation_runs
            WHERE chain = $1 ORDER BY start_time DESC, id DESC LIMIT 1""",
        chain,
    )
    if last is None or last["ledger_seq"] is None:
        return None, None
    rows = await conn.fetch(
        _TOUCHED,
        chain,
        last["start_time"] - timedelta(seconds=TOUCHED_SLACK_S),
        last["height"],
        int(last["ledger_seq"]),
        last["id"],
        list(last["ledger_gaps"]),
    )
    return last["id"], sorted({r["address"] for r in rows if r["address"]})


# Payments whose chain effect at the height and ledger booking may differ:
# everything else is in both.
_PAYMENTS_TIMING = """
SELECT p.tx_hash, p.transfer_index, p.asset, p.amount, p.block_height, p.status, p.counted,
       i.id AS invoice_id, i.merchant_id, i.deposit_address
  FROM payments p JOIN invoices i ON i.id = p.invoice_id
 WHERE p.chain = $1 AND p.status IN ('confirming', 'confirmed')
   AND (NOT p.counted OR p.status = 'confirming'
        OR p.block_height IS NULL OR p.block_height > $2)
   -- Kassa's own gas funding of a deposit address is recorded as a payment
   -- in another asset; it is booked (and explained) as the sweep's funding.
   AND NOT EXISTS (SELECT 1 FROM payout_transactions o WHERE o.tx_hash = p.tx_hash)
"""

# Confirmed payments not yet proven against their transaction.
_PAYMENTS_TO_PROVE = """
SELECT p.tx_hash, p.transfer_index, p.asset, p.amount, p.block_height,
       i.id AS invoice_id, i.merchant_id, i.deposit_address
  FROM payments p JOIN invoices i ON i.id = p.invoice_id
 WHERE p.chain = $1 AND p.status = 'confirmed' AND p.block_height <= $2
   AND NOT EXISTS (SELECT 1 FROM reconciliation_proven r
                    WHERE r.chain = p.chain AND r.tx_hash = p.tx_hash
                      AND r.resource = 'merchants/' || i.merchant_id || '/invoices/' || i.id
                                       || '#' || p.transfer_index)
"""

_PAYOUTS = """
SELECT p.id, p.kind, p.merchant_id, p.asset, p.amount, p.destination, p.source_address,
       p.state, p.landed_tx_hash, p.network_fee,
       coalesce((SELECT array_agg(t.tx_hash ORDER BY t.create_time)
                   FROM payout_transactions t WHERE t.payout_id = p.id), '{}') AS candidates,
       EXISTS (SELECT 1 FROM ledger_transfers l
                WHERE l.id = CASE p.kind WHEN 'sweep' THEN 'sweep:' || p.id || ':moved'
                                         WHEN 'gas_funding' THEN 'sweep:' || p.id || ':funded'
                                         ELSE 'payout:' || p.id || ':sent' END) AS value_booked,
       (SELECT l.amount FROM ledger_transfers l
         WHERE l.id = CASE WHEN p.kind IN ('sweep', 'gas_funding') THEN 'sweep:' || p.id || ':fee'
                           ELSE 'payout:' || p.id || ':fee' END) AS fee_booked
  FROM payouts p
 WHERE p.chain = $1
   AND NOT EXISTS (SELECT 1 FROM reconciliation_proven r
                    WHERE r.chain = p.chain
                      AND r.resource = CASE WHEN p.merchant_id IS NULL THEN 'sweeps/' || p.id
                                            ELSE 'merchants/' || p.merchant_id || '/payouts/' || p.id
                                       END)
"""


def _payout_resource(r: asyncpg.Record) -> str:
    if r["merchant_id"] is None:
        return f"sweeps/{r['id']}"
    return f"merchants/{r['merchant_id']}/payouts/{r['id']}"


def _payment_resource(r: asyncpg.Record) -> str:
    return f"merchants/{r['merchant_id']}/invoices/{r['invoice_id']}#{r['transfer_index']}"


@dataclass
class _Snapshot:
    chain: str
    height: int
    hot: str | None
    treasury: str | None
    ledger: dict[Location, int]
    chain_locations: list[Location]
    baselines: dict[Location, int]
    payments_timing: list[asyncpg.Record]
    payments_to_prove: list[asyncpg.Record]
    payouts: list[asyncpg.Record]

    @classmethod
    async def read(
        cls,
        conn: asyncpg.Connection,
        chain: str,
        height: int,
        hot: str | None,
        treasury: str | None,
        config: Configured,
        only: Sequence[str] | None = None,
    ) -> _Snapshot:
        """Every deposit address's custody, or (incremental) only those in `only`."""
        native = _native(chain)
        ledger: dict[Location, int] = {}
        wanted: list[Location] = []
        deposit, unattributed = Place.DEPOSIT, Place.LEDGER
        # One row per location: 100,000s per run, so nothing but the tuple is built.
        custody = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM ledger_accounts WHERE code = $1 AND asset LIKE $2 || '/%'",
                ledger_accounts.CUSTODY,
                chain,
            )
        ]
        # The aggregation sorts or hashes one row per address: in memory, not on disk.
        await conn.execute("SET LOCAL work_mem = '64MB'")
        if only is None:
            deposits = await conn.fetch(_DEPOSITS, chain, native, custody)
        else:
            deposits = await conn.fetch(_DEPOSITS_TOUCHED, chain, native, custody, list(only))
        for address, asset, balance in deposits:
            if address:
                loc = Location(asset, deposit, address)
                wanted.append(loc)
            else:
                loc = Location(asset, unattributed, "")
            if balance is not None:
                ledger[loc] = int(balance)
        assets = sorted({native, *(a.id for a in config.assets if a.chain == chain)})
        operator = [(Place.HOT, hot), (Place.TREASURY, treasury)]
        accounts = [
            (
                ledger_accounts.hot(a) if place is Place.HOT else ledger_accounts.treasury(a),
                a,
                place,
                addr,
            )
            for a in assets
            for place, addr in operator
            if addr
        ]
        found = {
            r["id"]: int(r["balance"])
            for r in await conn.fetch(
                """SELECT id, debits_posted - credits_posted AS balance
                     FROM ledger_accounts WHERE id = ANY($1::text[])""",
                [a[0] for a in accounts],
            )
        }
        for account_id, asset, place, address in accounts:
            assert address is not None
            loc = Location(asset, place, address.lower())
            ledger[loc] = found.get(account_id, 0)
            wanted.append(loc)
        baselines = {
            Location(r["asset"], Place(r["location"]), r["address"]): int(r["opening"])
            for r in await conn.fetch(
                "SELECT * FROM reconciliation_baselines WHERE chain = $1", chain
            )
        }
        return cls(
            chain=chain,
            height=height,
            hot=hot.lower() if hot else None,
            treasury=treasury,
            ledger=ledger,
            chain_locations=wanted,
            baselines=baselines,
            payments_timing=list(await conn.fetch(_PAYMENTS_TIMING, chain, height)),
            payments_to_prove=list(await conn.fetch(_PAYMENTS_TO_PROVE, chain, height)),
            payouts=list(await conn.fetch(_PAYOUTS, chain)),
        )

    def tx_hashes(self) -> list[str]:
        hashes = [r["tx_hash"] for r in self.payments_to_prove]
        for r in self.payouts:
            hashes += list(r["candidates"])
        return hashes

    def _payout_locations(
        self, r: asyncpg.Record
    ) -> tuple[Location | None, Location | None, Location | None]:
        asset, native = r["asset"], _native(self.chain)
        match r["kind"]:
            case "sweep":
                source = _loc(asset, Place.DEPOSIT, r["source_address"])
                return (
                    source,
                    _loc(asset, Place.TREASURY, r["destination"]),
                    _loc(native, Place.DEPOSIT, r["source_address"]),
                )
            case "gas_funding":
                return (
                    _loc(native, Place.HOT, self.hot),
                    _loc(native, Place.DEPOSIT, r["destination"]),
                    _loc(native, Place.HOT, self.hot),
                )
            case "nonce_fill":  # the hot key to itself: nothing moves but its fee
                hot = _loc(native, Place.HOT, self.hot)
                return hot, hot, hot
            case _:  # payout, refund: from the hot key to someone outside
                return _loc(asset, Place.HOT, self.hot), None, _loc(native, Place.HOT, self.hot)

    def movements(
        self, found: Mapping[str, adapter_pb2.TransactionTransfers]
    ) -> tuple[list[Movement], list[tuple[decide.Expected, str]]]:
        movements: list[Movement] = []
        expected: list[tuple[decide.Expected, str]] = []
        for r in self.payments_timing:
            movements.append(
                Movement(
                    kind=MovementKind.PAYMENT,
                    resource=_payment_resource(r),
                    amount=int(r["amount"]),
                    source=None,
                    destination=Location(r["asset"], Place.DEPOSIT, r["deposit_address"].lower()),
                    mined_height=r["block_height"],
                    succeeded=True,
                    value_booked=r["status"] == "confirmed" and r["counted"],
                    counted=r["counted"],
                    final=r["status"] == "confirmed",
                )
            )
        for r in self.payments_to_prove:
            expected.append(
                (
                    decide.Expected(
                        resource=_payment_resource(r),
                        tx_hash=r["tx_hash"],
                        asset=r["asset"],
                        amount=int(r["amount"]),
                        to_address=r["deposit_address"].lower(),
                        from_address=None,
                        succeeded=True,
                        index=r["transfer_index"],
                        height=r["block_height"],
                    ),
                    r["deposit_address"].lower(),
                )
            )
        for r in self.payouts:
            source, destination, fee_from = self._payout_locations(r)
            mined = [h for h in r["candidates"] if _mined_height(found.get(h)) is not None]
            landed = r["landed_tx_hash"] or (mined[0] if mined else None)
            tx = found.get(landed) if landed else None
            fee_on_chain = int(tx.fee_paid or 0) if tx is not None and tx.fee_paid else 0
            fee_booked = r["fee_booked"]
            final = r["state"] in _FINAL_PAYOUT
            if source is None and destination is None:
                continue  # no hot key known: nothing of it is compared
            movements.append(
                Movement(
                    kind=MovementKind(r["kind"]),
                    resource=_payout_resource(r),
                    amount=int(r["amount"]),
                    source=source,
                    destination=destination,
                    mined_height=_mined_height(tx),
                    succeeded=tx is not None
                    and tx.status == adapter_pb2.TRANSACTION_STATUS_SUCCEEDED,
                    value_booked=r["value_booked"],
                    fee_wei=fee_on_chain or int(fee_booked or 0),
                    fee_from=fee_from,
                    fee_booked=fee_booked is not None,
                    final=final,
                )
            )
            if final and r["landed_tx_hash"] and r["kind"] != "nonce_fill":
                # (a nonce fill carries no transfer to prove: value 0 to itself)
                to_address = (r["destination"] or "").lower()
                expected.append(
                    (
                        decide.Expected(
                            resource=_payout_resource(r),
                            tx_hash=r["landed_tx_hash"],
                            asset=r["asset"],
                            amount=int(r["amount"]),
                            to_address=to_address,
                            from_address=(r["source_address"] or self.hot or "").lower() or None,
                            succeeded=r["state"] == "confirmed",
                        ),
                        to_address,
                    )
                )
        return movements, expected

    def proven_without_tx(
        self, found: Mapping[str, adapter_pb2.TransactionTransfers], height: int
    ) -> list[tuple[str, str]]:
        """Final payouts that never landed and none of whose candidates is
        mined by the height: nothing of them will ever reach the chain."""
        out = []
        for r in self.payouts:
            never_landed = r["state"] in ("failed", "cancelled") and not r["landed_tx_hash"]
            if never_landed and all(_mined_height(found.get(h)) is None for h in r["candidates"]):
                out.append((_payout_resource(r), ""))
        return out
