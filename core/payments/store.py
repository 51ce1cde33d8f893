"""Every SQL statement on the payments table, in the caller's transaction.

The chain applier records, confirms, drops and reorgs payments through these
functions; the invoice lifecycle reads an invoice's sums and rows here. Each
writer returns the rows it changed in one shape (`_CHANGED`), which is what
the ledger posting (core/ledger/payments.py) and the invoice decision need.

Statuses are PaymentStatus values (core/payments/status.py); they appear as
SQL literals below because the partial indexes of the migrations name them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

# What every writer hands back for a changed payment: enough to post it in the
# ledger (invoice, tx, index, asset, amount, cycle) and to tell counted from not.
_CHANGED = "invoice_id, tx_hash, transfer_index, asset, amount, inclusions, counted"


class Match(NamedTuple):
    """A transfer to a watched deposit address, and the invoice it belongs to.

    A NamedTuple: one is built per matched transfer on a block's hot path.
    """

    tx_hash: str
    transfer_index: int
    invoice_id: str
    asset: str
    from_address: str
    to_address: str
    amount: int


def _columns(matches: Sequence[Match]) -> list[list[object]]:
    """The unnest arrays: tx_hash, index, invoice id, asset, from, to, amount."""
    return [
        [m.tx_hash for m in matches],
        [m.transfer_index for m in matches],
        [m.invoice_id for m in matches],
        [m.asset for m in matches],
        [m.from_address for m in matches],
        [m.to_address for m in matches],
        [m.amount for m in matches],
    ]


def counted(rows: Sequence[asyncpg.Record]) -> list[asyncpg.Record]:
    """Payments in the invoice's own asset: only those move the merchant's money."""
    return [r for r in rows if r["counted"]]


# The staging table of a block's payments (one per connection, emptied at every
# commit). COPY into it and one INSERT ... SELECT out of it measured at least as
# fast as an INSERT over unnest() of seven parameter arrays (330-450 ms vs
# 465-605 ms for 5,000 rows on a loaded machine, both with the foreign key and
# five indexes of `payments` to maintain): COPY's binary rows cost the server less
# to read than arrays to unnest. Amounts travel as text (numeric has no binary
# codec on the core's connections) and are cast in the INSERT.
_STAGE = "payments_block_stage"
_CREATE_STAGE = f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    tx_hash text NOT NULL, transfer_index integer NOT NULL, invoice_id text NOT NULL,
    asset text NOT NULL, from_address text NOT NULL, to_address text NOT NULL,
    amount text NOT NULL, confirm_height bigint NOT NULL, counted boolean NOT NULL
) ON COMMIT DELETE ROWS"""
_STAGE_COLUMNS = (
    "tx_hash",
    "transfer_index",
    "invoice_id",
    "asset",
    "from_address",
    "to_address",
    "amount",
    "confirm_height",
    "counted",
)
_INSERT_MINED = f"""
INSERT INTO payments (chain, tx_hash, transfer_index, invoice_id, asset, from_address,
                      to_address, amount, block_height, block_hash, status, confirm_height,
                      counted, first_seen_time)
SELECT $1, s.tx_hash, s.transfer_index, s.invoice_id, s.asset, s.from_address, s.to_address,
       s.amount::numeric, $2, $3, 'confirming', s.confirm_height, s.counted, $4
  FROM {_STAGE} s
-- Revives a reorged payment (a new ledger cycle), and takes over the
-- transaction's mempool sighting: a 'pending' one opens its first
-- cycle now; a zero-conf one stays confirmed, already posted.
ON CONFLICT (chain, tx_hash, transfer_index) DO UPDATE
   SET block_height = excluded.block_height, block_hash = excluded.block_hash,
       status = CASE WHEN payments.status = 'confirmed' THEN 'confirmed'
                     ELSE 'confirming' END,
       confirm_height = excluded.confirm_height,
       inclusions = payments.inclusions
                    + CASE WHEN payments.status = 'reorged' THEN 1 ELSE 0 END,
       update_time = now()
 WHERE payments.status = 'reorged'
    OR (payments.block_height IS NULL
        AND payments.status IN ('pending', 'confirmed'))
RETURNING {_CHANGED}, status
"""  # noqa: S608 (constant table and column names)


async def record_mined(
    conn: asyncpg.Connection,
    chain: str,
    height: int,
    block_hash: str,
    matches: Sequence[Match],
    invoices: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> list[asyncpg.Record]:
    """Records a block's transfers to watched addresses (status confirming), or
    takes over their earlier rows; returns the rows written, with `status`.

    `invoices` are the matched invoices' rows, locked by the caller (their
    confirmation threshold and asset do not move under it): a payment confirms
    at `height + confirmations_required - 1`, and only the invoice's own asset
    counts — another asset to the address (another token, another chain's) is
    kept as evidence and flagged wrong_asset, whatever the invoice's state or
    age: every unit to a derived address is recorded. Every match must name one
    of them. `now` (the core's clock) is a new row's first_seen_time: late and
    past-the-window are judged against the invoice's times on the same clock.
    Called at most once per transaction (the staging table empties at commit).
    """
    if not matches:
        return []
    records = []
    for m in matches:
        invoice = invoices[m.invoice_id]
        records.append(
            (
                m.tx_hash,
                m.transfer_index,
                m.invoice_id,
                m.asset,
                m.from_address,
                m.to_address,
                str(m.amount),
                height + invoice["confirmations_required"] - 1,
                m.asset == invoice["asset"],
            )
        )
    await conn.execute(_CREATE_STAGE)
    await conn.copy_records_to_table(_STAGE, records=records, columns=_STAGE_COLUMNS)
    return list(await conn.fetch(_INSERT_MINED, chain, height, block_hash, now))


async def invoices_due(
    conn: asyncpg.Connection, chain: str, height: int, tx_hashes: Sequence[str]
) -> set[str]:
    """The invoices a block at `height` changes besides those it pays: their
    confirming payments reach the threshold (confirm_due), or their unmined
    sightings of the block's transactions are settled by it (drop_sightings).
    Read before anything is written, so that all of a block's invoices are
    locked at once, in id order."""
    rows = await conn.fetch(
        """SELECT invoice_id FROM payments
            WHERE chain = $1 AND status = 'confirming' AND confirm_height <= $2
           UNION
           SELECT invoice_id FROM payments
            WHERE chain = $1 AND block_height IS NULL AND status IN ('pending', 'confirmed')
              AND tx_hash = ANY($3::text[])""",
        chain,
        height,
        list(tx_hashes),
    )
    return {r["invoice_id"] for r in rows}


async def record_sightings(
    conn: asyncpg.Connection, chain: str, matches: Sequence[Match], now: datetime
) -> list[asyncpg.Record]:
    """Records mempool sightings (pending; confirmed at once for a zero-conf
    invoice's own asset); a transaction already recorded changes nothing."""
    return list(
        await conn.fetch(
            f"""INSERT INTO payments (chain, tx_hash, transfer_index, invoice_id, asset,
                                     from_address, to_address, amount, block_height,
                                     block_hash, status, confirm_height, counted, first_seen_time)
               SELECT $1, u.tx_hash, u.idx, u.invoice_id, u.asset, u.from_address,
                      u.to_address, u.amount, NULL, NULL,
                      -- Zero-conf: the sighting settles the invoice's own asset at once.
                      CASE WHEN i.confirmations_required = 0 AND u.asset = i.asset
                           THEN 'confirmed' ELSE 'pending' END,
                      NULL, u.asset = i.asset, $9
                 FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                             $7::text[], $8::numeric[])
                      AS u(tx_hash, idx, invoice_id, asset, from_address, to_address, amount)
                 JOIN invoices i ON i.id = u.invoice_id
               ON CONFLICT (chain, tx_hash, transfer_index) DO NOTHING
               RETURNING {_CHANGED}, status""",  # noqa: S608 (constant column list)
            chain,
            *_columns(matches),
            now,
        )
    )


async def confirm_due(conn: asyncpg.Connection, chain: str, height: int) -> list[asyncpg.Record]:
    """Confirming payments whose threshold the head `height` reached become confirmed."""
    return list(
        await conn.fetch(
            f"""UPDATE payments SET status = 'confirmed', update_time = now()
                WHERE chain = $1 AND status = 'confirming' AND confirm_height <= $2
               RETURNING {_CHANGED}""",  # noqa: S608 (constant column list)
            chain,
            height,
        )
    )


async def sightings_due(conn: asyncpg.Connection, chain: str, ttl_s: int) -> bool:
    """Whether any unmined sighting is older than ttl_s (lock-free, partial index)."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM payments
                               WHERE chain = $1 AND block_height IS NULL
                                 AND status IN ('pending', 'confirmed')
                                 AND update_time < now() - make_interval(secs => $2))""",
            chain,
            float(ttl_s),
        )
    )


async def drop_sightings(
    conn: asyncpg.Connection, chain: str, tx_hashes: Sequence[str], older_than_s: int | None
) -> list[asyncpg.Record]:
    """Unmined sightings of these transactions, or older than older_than_s,
    become reorged (block NULL); each row carries `was`, its status before."""
    return list(
        await conn.fetch(
            """UPDATE payments p SET status = 'reorged', update_time = now()
                 FROM (SELECT tx_hash, transfer_index, status AS was FROM payments
                        WHERE chain = $1 AND block_height IS NULL
                          AND status IN ('pending', 'confirmed')
                          AND (tx_hash = ANY($2::text[])
                               OR update_time < now() - make_interval(secs => $3))
                        FOR UPDATE) old
                WHERE p.chain = $1 AND p.tx_hash = old.tx_hash
                  AND p.transfer_index = old.transfer_index
               RETURNING p.invoice_id, p.tx_hash, p.transfer_index, p.asset, p.amount,
                         p.inclusions, p.counted, old.was""",
            chain,
            list(tx_hashes),
            None if older_than_s is None else float(older_than_s),
        )
    )


async def reorg_above(conn: asyncpg.Connection, chain: str, height: int) -> list[asyncpg.Record]:
    """Payments in blocks above `height` left the chain: reorged, block cleared."""
    return list(
        await conn.fetch(
            f"""UPDATE payments SET status = 'reorged', block_height = NULL, block_hash = NULL,
                                   confirm_height = NULL, update_time = now()
                WHERE chain = $1 AND block_height > $2 AND status <> 'reorged'
               RETURNING {_CHANGED}""",  # noqa: S608 (constant column list)
            chain,
            height,
        )
    )


async def unconfirm_above(
    conn: asyncpg.Connection, chain: str, height: int
) -> list[asyncpg.Record]:
    """Payments still included below `height` lose the confirmations above it."""
    return list(
        await conn.fetch(
            f"""UPDATE payments SET status = 'confirming', inclusions = inclusions + 1,
                                   update_time = now()
                WHERE chain = $1 AND status = 'confirmed' AND confirm_height > $2
               RETURNING {_CHANGED}""",  # noqa: S608 (constant column list)
            chain,
            height,
        )
    )


@dataclass(frozen=True)
class Sums:
    """An invoice's payments summed by how settled they are (base units)."""

    pending: int = 0
    confirming: int = 0
    confirmed: int = 0
    late: int = 0  # counted, first seen after the invoice's deadline
    wrong_asset: int = 0  # transfers of another asset (a count)
    outside: int = 0  # counted, first seen after the invoice's monitoring window


def sums(invoice: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> Sums:
    """An invoice's payment rows (`rows_of`) summed by status; reorged ones count nowhere.

    Pure: the block applier reads an invoice's payments once, for these sums
    and for its event snapshots, instead of a second, aggregating statement.
    Late and outside are judged by first_seen_time against the invoice's
    deadline and monitoring window."""
    pending = confirming = confirmed = late = outside = wrong_asset = 0
    expire_time, monitoring_end_time = invoice["expire_time"], invoice["monitoring_end_time"]
    for r in rows:
        status = r["status"]
        if status == "reorged":
            continue
        if not r["counted"]:
            wrong_asset += 1
            continue
        amount = r["amount"]
        if status == "confirmed":
            confirmed += amount
        elif status == "confirming":
            confirming += amount
        else:
            assert status == "pending", r
            pending += amount
        seen = r["first_seen_time"]
        if seen > expire_time:
            late += amount
        if seen > monitoring_end_time:
            outside += amount
    return Sums(pending, confirming, confirmed, late, wrong_asset, outside)


# What the readers of `rows_of` use: `sums` (status, counted, amount,
# first_seen_time) and the snapshots' payments (core/render/invoices.payment),
# 11 of the table's 17 columns. A block reads 5,000 rows: fetching them took
# ~16 ms of the client's CPU against ~22 ms for `SELECT *`, the server's
# ~36 against ~45 ms (12 alternations on a 1,000,000-invoice database).
ROW_COLUMNS = (
    "invoice_id",
    "tx_hash",
    "transfer_index",
    "asset",
    "from_address",
    "amount",
    "block_height",
    "block_hash",
    "status",
    "counted",
    "first_seen_time",
)
# Each invoice's rows oldest first; the order across invoices is nobody's (they
# are grouped by invoice below), so they are sorted by invoice id first under
# "C" (bytewise, abbreviated keys) and only an invoice's own rows are compared
# on the order its readers see, in the database's collation as before. A
# block's 5,000 rows share first_seen_time, so the old order compared their
# tx hashes through strcoll: server CPU median ~31 against ~36 ms.
_ROWS_OF = f"""SELECT {", ".join(ROW_COLUMNS)} FROM payments WHERE invoice_id = ANY($1::text[])
 ORDER BY invoice_id COLLATE "C", first_seen_time, tx_hash, transfer_index"""  # noqa: S608 (constant column list)


async def rows_of(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
    """Each invoice's payment rows, oldest first (reorged ones included, as
    evidence), with the columns ROW_COLUMNS."""
    by_invoice: dict[str, list[asyncpg.Record]] = {i: [] for i in ids}
    for r in await conn.fetch(_ROWS_OF, list(ids)):
        by_invoice[r["invoice_id"]].append(r)
    return by_invoice
