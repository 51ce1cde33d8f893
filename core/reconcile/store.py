"""The one writer of reconciliation results: a run, its differences, the
baselines and proofs it settled, the exception entries and the
`reconciliation.mismatch` event — all in one transaction."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from core.events import outbox
from core.reconcile import render
from core.reconcile.decide import BalanceDifference, Location, Place
from kassa.core.v1 import reconciliation_pb2 as pb

MISMATCH_EVENT = "reconciliation.mismatch"
EXCEPTION_KIND = "reconciliation_mismatch"


@dataclass(frozen=True, slots=True)
class TransactionDifference:
    resource: str
    tx_hash: str
    asset: str
    address: str
    detail: str


@dataclass
class RunResult:
    chain: str
    trigger: str
    request_id: str
    height: int
    block_hash: str
    locations_compared: int
    balances_compared: int
    transactions_compared: int
    balances: list[BalanceDifference]
    transactions: list[TransactionDifference]
    new_baselines: dict[Location, int]
    proven: list[tuple[str, str]]  # (resource, tx_hash)
    start_time: datetime
    finish_time: datetime
    # The ledger's last transfer the snapshot saw; an incremental run's predecessor.
    ledger_seq: int | None = None
    ledger_gaps: list[int] = field(default_factory=list)
    since_run: str | None = None
    id: str = field(default_factory=lambda: secrets.token_hex(10))

    @property
    def incremental(self) -> bool:
        return self.since_run is not None

    @property
    def unexplained_count(self) -> int:
        return sum(1 for d in self.balances if d.unexplained) + len(self.transactions)


def _dedup_key(chain: str, row: tuple[object, ...]) -> str:
    kind, asset, location, address, tx_hash, resource = row
    return f"reconcile:{chain}:{kind}:{asset}:{location}:{address}:{tx_hash}:{resource}"


async def by_request(conn: asyncpg.Connection, request_id: str) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT id FROM reconciliation_runs WHERE request_id = $1", request_id
    )
    return found


async def save(conn: asyncpg.Connection, r: RunResult) -> bool:
    """Writes the run; False when another run took its request_id first."""
    assert conn.is_in_transaction()
    inserted = await conn.fetchval(
        """INSERT INTO reconciliation_runs (id, chain, request_id, trigger, height, block_hash,
                   locations_compared, balances_compared, transactions_compared,
                   unexplained_count, start_time, finish_time, incremental, ledger_seq, since_run,
                   ledger_gaps)
           VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                   $16)
           ON CONFLICT (request_id) DO NOTHING RETURNING id""",
        r.id,
        r.chain,
        r.request_id,
        r.trigger,
        r.height,
        r.block_hash,
        r.locations_compared,
        r.balances_compared,
        r.transactions_compared,
        r.unexplained_count,
        r.start_time,
        r.finish_time,
        r.incremental,
        r.ledger_seq,
        r.since_run,
        r.ledger_gaps,
    )
    if inserted is None:
        return False
    rows: list[tuple[object, ...]] = []
    for d in r.balances:
        loc = d.location
        rows.append(
            (
                r.id,
                len(rows),
                "unattributed" if loc.place is Place.LEDGER else "balance",
                loc.asset,
                loc.place.value,
                loc.address,
                d.ledger_amount,
                d.chain_amount,
                d.unexplained_amount,
                json.dumps(
                    [
                        {"kind": e.kind, "resource": e.resource, "amount": str(e.amount)}
                        for e in d.explanations
                    ]
                ),
                "",
                "",
                "",
                d.unexplained,
            )
        )
    for t in r.transactions:
        rows.append(
            (
                r.id,
                len(rows),
                "transaction",
                t.asset,
                "",
                t.address,
                None,
                None,
                0,
                "[]",
                t.tx_hash,
                t.resource,
                t.detail,
                True,
            )
        )
    await conn.executemany(
        """INSERT INTO reconciliation_differences (run_id, n, kind, asset, location, address,
                   ledger_amount, chain_amount, unexplained_amount, explanations, tx_hash,
                   resource, detail, unexplained)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14)""",
        rows,
    )
    if r.new_baselines:
        await conn.executemany(
            """INSERT INTO reconciliation_baselines (chain, asset, location, address, opening, run_id)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            [
                (r.chain, loc.asset, loc.place.value, loc.address, opening, r.id)
                for loc, opening in r.new_baselines.items()
            ],
        )
    if r.proven:
        await conn.executemany(
            """INSERT INTO reconciliation_proven (chain, resource, tx_hash, run_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [(r.chain, resource, tx_hash, r.id) for resource, tx_hash in r.proven],
        )
    changed = await _exceptions(conn, r, [row for row in rows if row[-1]])
    if changed:
        run = await load(conn, r.id)
        assert run is not None
        await outbox.append(
            conn,
            [
                outbox.NewEvent(
                    MISMATCH_EVENT,
                    "",  # the platform's: no merchant
                    render.name(r.id),
                    run.SerializeToString(),
                    resource_type="reconciliation",
                )
            ],
        )
    return True


async def _exceptions(
    conn: asyncpg.Connection, r: RunResult, unexplained: Sequence[tuple[object, ...]]
) -> int:
    """Opens an exception per new unexplained difference, refreshes the open
    one of a difference that persists; returns how many opened or changed."""
    changed = 0
    for row in unexplained:
        kind, asset, location, address = row[2], row[3], row[4], row[5]
        amount, tx_hash, resource, detail = row[8], row[10], row[11], row[12]
        key = _dedup_key(r.chain, (kind, asset, location, address, tx_hash, resource))
        subject = resource or f"{r.chain}/{location}/{address}/{asset}"
        text = str(detail) or (
            f"{location} {address} holds {row[7]} {asset} on chain at block {r.height}, "
            f"the ledger {row[6]}: {amount} unexplained"
        )
        acknowledged = await conn.fetchval(
            """SELECT 1 FROM exceptions
                WHERE dedup_key = $1 AND state = 'resolved' AND resolve_action = 'acknowledge'
                  AND amount = $2 LIMIT 1""",
            key,
            amount,
        )
        if acknowledged:
            continue  # a person accepted exactly this difference already
        status = await conn.fetchval(
            """INSERT INTO exceptions (id, kind, dedup_key, resource, evidence, detail, amount,
                                       create_time, update_time, chain, asset, location, address)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, NULLIF($11, ''), $12)
               ON CONFLICT (dedup_key) WHERE state = 'open' DO UPDATE
                  SET evidence = EXCLUDED.evidence, detail = EXCLUDED.detail,
                      amount = EXCLUDED.amount, update_time = EXCLUDED.update_time
                WHERE exceptions.amount IS DISTINCT FROM EXCLUDED.amount
                   OR exceptions.detail <> EXCLUDED.detail
               RETURNING (xmax = 0)""",
            secrets.token_hex(10),
            EXCEPTION_KIND,
            key,
            subject,
            render.name(r.id),
            text,
            amount,
            r.finish_time,
            r.chain,
            asset,
            location,
            address,
        )
        if status is not None:
            changed += 1
    return changed


async def load(conn: asyncpg.Connection, run_id: str) -> pb.Reconciliation | None:
    row = await conn.fetchrow("SELECT * FROM reconciliation_runs WHERE id = $1", run_id)
    if row is None:
        return None
    differences = await conn.fetch(
        "SELECT * FROM reconciliation_differences WHERE run_id = $1 ORDER BY n", run_id
    )
    return render.run(row, differences)


async def page(
    conn: asyncpg.Connection, chain: str, before: tuple[datetime, str] | None, limit: int
) -> list[pb.Reconciliation]:
    rows = await conn.fetch(
        """SELECT * FROM reconciliation_runs
            WHERE ($1 = '' OR chain = $1)
              AND ($2::timestamptz IS NULL OR (start_time, id) < ($2, $3))
            ORDER BY start_time DESC, id DESC LIMIT $4""",
        chain,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
    return [render.run(r, ()) for r in rows]


class Reconciliations:
    """Reading runs back, bound to the pool (for ReconciliationService, which holds none)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, run_id: str) -> pb.Reconciliation | None:
        async with self.pool.acquire() as conn:
            return await load(conn, run_id)

    async def page(
        self, chain: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[pb.Reconciliation]:
        async with self.pool.acquire() as conn:
            return await page(conn, chain, before, limit)
