"""Exception entries: listing them and resolving one with its audit (who,
which action, why, when). The first kind is `reconciliation_mismatch`; the
exception queue adds the others to the same table.

Resolving is the only writer of an entry's resolution. Re-baselining a hot
key's or treasury's mismatch moves the location's opening baseline by the
entry's amount in the same transaction, so the next run explains exactly
the gap the operator accepted and flags any further change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import assert_never

import asyncpg


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    REBASELINE = "rebaseline"


class Refusal(StrEnum):
    """Why a resolution was refused: ErrorInfo reasons at the edge."""

    NOT_FOUND = "EXCEPTION_NOT_FOUND"
    ALREADY_RESOLVED = "EXCEPTION_ALREADY_RESOLVED"
    NOT_REBASELINABLE = "EXCEPTION_NOT_REBASELINABLE"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"


class ResolveRefused(Exception):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


@dataclass(frozen=True)
class Resolution:
    exception_id: str
    action: Action
    reason: str
    actor: str
    request_id: str  # "" when none


def rebaselinable(kind: str, location: str | None) -> bool:
    """Whether an entry can become its location's baseline: a hot key's or
    treasury's balance gap (funds moved outside Kassa). A deposit address's gap
    never can: it belongs to an invoice."""
    return kind == "reconciliation_mismatch" and location in ("hot", "treasury")


def _same(row: asyncpg.Record, r: Resolution) -> bool:
    return (row["id"], row["resolve_action"], row["resolve_reason"]) == (
        r.exception_id,
        r.action.value,
        r.reason,
    )


async def resolve(conn: asyncpg.Connection, r: Resolution, now: datetime) -> asyncpg.Record:
    """Resolves the entry; a retry with the same request_id answers the first result."""
    assert conn.is_in_transaction()
    assert r.reason.strip(), "a resolution needs a reason"
    if r.request_id:
        earlier = await conn.fetchrow(
            "SELECT * FROM exceptions WHERE resolve_request_id = $1", r.request_id
        )
        if earlier is not None:
            if not _same(earlier, r):
                raise ResolveRefused(
                    Refusal.REQUEST_ID_REUSED, "request_id was used for a different request"
                )
            return earlier
    row = await conn.fetchrow("SELECT * FROM exceptions WHERE id = $1 FOR UPDATE", r.exception_id)
    if row is None:
        raise ResolveRefused(Refusal.NOT_FOUND, f"exceptions/{r.exception_id} not found")
    if row["state"] != "open":
        raise ResolveRefused(
            Refusal.ALREADY_RESOLVED,
            f"exceptions/{r.exception_id} was resolved by {row['resolve_actor']}",
        )
    match r.action:
        case Action.ACKNOWLEDGE:
            pass
        case Action.REBASELINE:
            moved = None
            if rebaselinable(row["kind"], row["location"]):
                moved = await conn.fetchval(
                    """UPDATE reconciliation_baselines SET opening = opening + $5
                        WHERE chain = $1 AND asset = $2 AND location = $3 AND address = $4
                    RETURNING opening""",
                    row["chain"],
                    row["asset"],
                    row["location"],
                    row["address"],
                    row["amount"],
                )
            if moved is None:
                raise ResolveRefused(
                    Refusal.NOT_REBASELINABLE,
                    "only a hot key's or treasury's balance mismatch can be re-baselined",
                )
        case _:
            assert_never(r.action)
    resolved = await conn.fetchrow(
        """UPDATE exceptions
              SET state = 'resolved', resolve_action = $2, resolve_actor = $3,
                  resolve_reason = $4, resolve_time = $5, resolve_request_id = NULLIF($6, ''),
                  update_time = $5
            WHERE id = $1 RETURNING *""",
        r.exception_id,
        r.action.value,
        r.actor,
        r.reason,
        now,
        r.request_id,
    )
    assert resolved is not None
    return resolved


async def page(
    conn: asyncpg.Connection, state: str, after: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    """Oldest first, after a position."""
    return list(
        await conn.fetch(
            """SELECT * FROM exceptions
                WHERE state = $1
                  AND ($2::timestamptz IS NULL OR (create_time, id) > ($2, $3))
                ORDER BY create_time, id LIMIT $4""",
            state,
            after[0] if after else None,
            after[1] if after else "",
            limit,
        )
    )


class Exceptions:
    """Listing and resolving entries, bound to the pool (for ExceptionService,
    which holds none): each resolution in its own transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(
        self, state: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await page(conn, state, after, limit)

    async def resolve(self, r: Resolution, now: datetime) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            return await resolve(conn, r, now)
