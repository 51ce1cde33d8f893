"""Every SQL statement on the payments table, in the caller's transaction.

The chain applier records, confirms, drops and reorgs payments through these
functions; the invoice lifecycle reads an invoice's sums and rows here. Each
writer returns the rows it changed in one shape (`_CHANGED`), which is what
the ledger posting (core/ledger/payments.py) and the invoice decision need.

Statuses are PaymentStatus values (core/payments/status.py); they appear as
SQL literals below because the partial indexes of the migrations name them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

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


async def record_mined(
    conn: asyncpg.Connection,
    chain: str,
    height: int,
    block_hash: str,
    matches: Sequence[Match],
    now: datetime,
) -> list[asyncpg.Record]:
    """Records a block's transfers to watched addresses (status confirming), or
    takes over their earlier rows; returns the rows written, with `status`.
    `now` (the core's clock) is a new row's first_seen_time: late and
    past-the-window are judged against the invoice's times on the same clock."""
    return list(
        await conn.fetch(
            f"""INSERT INTO payments (chain, tx_hash, transfer_index, invoice_id, asset,
                                     from_address, to_address, amount, block_height,
                                     block_hash, status, confirm_height, counted, first_seen_time)
               SELECT $1, u.tx_hash, u.idx, u.invoice_id, u.asset, u.from_address,
                      u.to_address, u.amount, $2, $3, 'confirming',
                      $2::bigint + i.confirmations_required - 1, u.asset = i.asset, $11
                 FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::text[],
                             $9::text[], $10::numeric[])
                      AS u(tx_hash, idx, invoice_id, asset, from_address, to_address, amount)
                 -- Another asset to the address (another token, another chain's) is kept
                 -- as evidence and flagged wrong_asset, never counted. Whatever the
                 -- invoice's state or age: every unit to a derived address is recorded.
                 JOIN invoices i ON i.id = u.invoice_id
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
               RETURNING {_CHANGED}, status""",  # noqa: S608 (constant column list)
            chain,
            height,
            block_hash,
            *_columns(matches),
            now,
        )
    )


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


async def sums_of(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, Sums]:
    """Each invoice's payments summed by status (reorged ones count nowhere)."""
    # The invoices' deadlines are read first by primary key: joined directly, the
    # planner hashed the whole invoices table (0.28 s at 1,000,000 invoices).
    rows = await conn.fetch(
        """WITH i AS MATERIALIZED (
               SELECT id, expire_time, monitoring_end_time FROM invoices WHERE id = ANY($1::text[])
           )
           SELECT p.invoice_id,
                  coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status = 'pending'), 0) AS pending,
                  coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status = 'confirming'), 0) AS confirming,
                  coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status = 'confirmed'), 0) AS confirmed,
                  coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status <> 'reorged'
                                                 AND p.first_seen_time > i.expire_time), 0) AS late,
                  coalesce(sum(p.amount) FILTER (WHERE p.counted AND p.status <> 'reorged'
                                                 AND p.first_seen_time > i.monitoring_end_time), 0)
                      AS outside,
                  count(*) FILTER (WHERE NOT p.counted AND p.status <> 'reorged') AS wrong_asset
             FROM payments p JOIN i ON i.id = p.invoice_id
            WHERE p.invoice_id = ANY($1::text[]) GROUP BY p.invoice_id""",
        list(ids),
    )
    sums = {i: Sums() for i in ids}
    for r in rows:
        sums[r["invoice_id"]] = Sums(
            pending=r["pending"],
            confirming=r["confirming"],
            confirmed=r["confirmed"],
            late=r["late"],
            wrong_asset=r["wrong_asset"],
            outside=r["outside"],
        )
    return sums


async def rows_of(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, list[asyncpg.Record]]:
    """Each invoice's payment rows, oldest first (reorged ones included, as evidence)."""
    by_invoice: dict[str, list[asyncpg.Record]] = {i: [] for i in ids}
    for r in await conn.fetch(
        "SELECT * FROM payments WHERE invoice_id = ANY($1::text[]) ORDER BY first_seen_time, tx_hash, transfer_index",
        list(ids),
    ):
        by_invoice[r["invoice_id"]].append(r)
    return by_invoice
