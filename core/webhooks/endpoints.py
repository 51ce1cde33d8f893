"""Webhook endpoints and their deliveries (the logic behind WebhookService).

Handlers validate; this module reads and writes. Times come from the
caller's clock so deliveries, retries and rotations agree on "now".
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from core import idempotency, names
from core.errors import Code, Refusal, not_found
from core.webhooks import signing
from core.webhooks.dispatch import time_ordered_id, time_ordered_prefix
from core.webhooks.sealing import Keyring, seal, unseal


@dataclass(frozen=True)
class EndpointChanges:
    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    disabled: bool | None = None


@dataclass(frozen=True)
class DeliveryFilter:
    endpoint_id: str | None  # None: every endpoint of the merchant
    event_id: uuid.UUID | None
    status: str | None


@dataclass(frozen=True)
class RedeliverTarget:
    delivery_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


def endpoint_name(merchant_id: str, endpoint_id: str) -> str:
    return names.webhook_endpoint(merchant_id, endpoint_id)


class Endpoints:
    def __init__(
        self,
        pool: asyncpg.Pool,
        give_up_after_s: float,
        default_overlap_s: int,
        keyring: Keyring,
    ) -> None:
        self.pool = pool
        self.give_up_after_s = give_up_after_s
        self.default_overlap_s = default_overlap_s
        # Secrets are stored sealed under its current KEK (core/webhooks/sealing.py).
        self.keyring = keyring

    def secret_of(self, row: asyncpg.Record) -> str:
        """The endpoint's current secret (a row not yet re-sealed may hold it in clear)."""
        if row["secret_sealed"] is not None:
            return unseal(self.keyring, row["id"], bytes(row["secret_sealed"]))
        assert row["secret"] is not None, "one form of the secret is always stored"
        return str(row["secret"])

    async def create(
        self,
        merchant_id: str,
        url: str,
        event_types: Sequence[str],
        description: str,
        disabled: bool,
        request_id: str | None,
        request_hash: bytes = b"",
    ) -> tuple[asyncpg.Record, str]:
        """The endpoint and its secret; a retry with the same request_id and
        body returns the same endpoint (with its current secret), the same
        request_id with another body is REQUEST_ID_REUSED."""
        async with self.pool.acquire() as conn:
            if request_id is not None:
                existing = await conn.fetchrow(
                    "SELECT * FROM webhook_endpoints WHERE merchant_id = $1 AND request_id = $2",
                    merchant_id,
                    request_id,
                )
                if existing is not None:
                    idempotency.check(
                        existing["request_hash"],
                        request_hash,
                        request_id,
                        endpoint_name(merchant_id, existing["id"]),
                    )
                    return existing, self.secret_of(existing)
            secret = signing.new_secret()
            endpoint_id = secrets.token_hex(8)
            try:
                row = await conn.fetchrow(
                    """INSERT INTO webhook_endpoints
                         (id, merchant_id, url, event_types, description, disabled,
                          secret_sealed, after_sequence, request_id, request_hash)
                       SELECT $1, $2, $3, $4, $5, $6, $7, last, $8, $9 FROM event_sequence
                       RETURNING *""",
                    endpoint_id,
                    merchant_id,
                    url,
                    sorted(set(event_types)),
                    description,
                    disabled,
                    seal(self.keyring, endpoint_id, secret),
                    request_id,
                    request_hash if request_id is not None else None,
                )
            except asyncpg.ForeignKeyViolationError:
                raise not_found("merchant", names.merchant(merchant_id)) from None
            except asyncpg.UniqueViolationError:
                # A concurrent retry with the same request_id won the race.
                return await self.create(
                    merchant_id, url, event_types, description, disabled, request_id, request_hash
                )
        assert row is not None
        return row, secret

    async def get(self, merchant_id: str, endpoint_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT * FROM webhook_endpoints
                    WHERE merchant_id = $1 AND id = $2 AND delete_time IS NULL""",
                merchant_id,
                endpoint_id,
            )
        if row is None:
            raise not_found("webhook_endpoint", endpoint_name(merchant_id, endpoint_id))
        return row

    async def list_endpoints(self, merchant_id: str) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    """SELECT * FROM webhook_endpoints
                        WHERE merchant_id = $1 AND delete_time IS NULL
                        ORDER BY create_time, id""",
                    merchant_id,
                )
            )

    async def update(
        self, merchant_id: str, endpoint_id: str, changes: EndpointChanges, now: datetime
    ) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """UPDATE webhook_endpoints
                      SET url = coalesce($3, url),
                          event_types = coalesce($4, event_types),
                          description = coalesce($5, description),
                          disabled = coalesce($6, disabled),
                          update_time = $7
                    WHERE merchant_id = $1 AND id = $2 AND delete_time IS NULL
                    RETURNING *""",
                merchant_id,
                endpoint_id,
                changes.url,
                sorted(set(changes.event_types)) if changes.event_types is not None else None,
                changes.description,
                changes.disabled,
                now,
            )
        if row is None:
            raise not_found("webhook_endpoint", endpoint_name(merchant_id, endpoint_id))
        return row

    async def delete(self, merchant_id: str, endpoint_id: str, now: datetime) -> None:
        """Deletes the endpoint and cancels what it still had to receive."""
        async with self.pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                """UPDATE webhook_endpoints SET delete_time = $3, update_time = $3
                    WHERE merchant_id = $1 AND id = $2 AND delete_time IS NULL RETURNING id""",
                merchant_id,
                endpoint_id,
                now,
            )
            if deleted is None:
                raise not_found("webhook_endpoint", endpoint_name(merchant_id, endpoint_id))
            await conn.execute(
                """UPDATE webhook_deliveries SET status = 'cancelled', update_time = $2
                    WHERE endpoint_id = $1 AND status = 'pending'""",
                endpoint_id,
                now,
            )

    async def rotate(
        self,
        merchant_id: str,
        endpoint_id: str,
        overlap_s: int | None,
        request_id: str | None,
        now: datetime,
        request_hash: bytes = b"",
    ) -> tuple[asyncpg.Record, str]:
        """A new secret; the previous one signs too until the overlap ends.
        A retry with the request_id (and body) of the last rotation returns its
        secret; that request_id with another body is REQUEST_ID_REUSED."""
        overlap_s = self.default_overlap_s if overlap_s is None else overlap_s
        async with self.pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                """SELECT * FROM webhook_endpoints
                    WHERE merchant_id = $1 AND id = $2 AND delete_time IS NULL FOR UPDATE""",
                merchant_id,
                endpoint_id,
            )
            if current is None:
                raise not_found("webhook_endpoint", endpoint_name(merchant_id, endpoint_id))
            if request_id is not None and current["rotation_request_id"] == request_id:
                idempotency.check(
                    current["rotation_request_hash"],
                    request_hash,
                    request_id,
                    endpoint_name(merchant_id, endpoint_id),
                )
                return current, self.secret_of(current)
            secret = signing.new_secret()
            row = await conn.fetchrow(
                """UPDATE webhook_endpoints
                      SET secret_sealed = $2, previous_secret_sealed = $6,
                          secret = NULL, previous_secret = NULL,
                          previous_secret_expire_time = $3, rotation_request_id = $4,
                          update_time = $5, rotation_request_hash = $7
                    WHERE id = $1 RETURNING *""",
                endpoint_id,
                seal(self.keyring, endpoint_id, secret),
                now + timedelta(seconds=overlap_s),
                request_id,
                now,
                seal(self.keyring, endpoint_id, self.secret_of(current)),
                request_hash if request_id is not None else None,
            )
        assert row is not None
        return row, secret

    async def deliveries(
        self,
        merchant_id: str,
        where: DeliveryFilter,
        page_size: int,
        after: tuple[int, uuid.UUID] | None,
    ) -> tuple[list[asyncpg.Record], dict[uuid.UUID, list[asyncpg.Record]]]:
        """A page of deliveries, newest event first (page_size + 1 rows tell
        whether more follow), and the attempts of each, oldest first."""
        async with self.pool.acquire() as conn:
            if where.endpoint_id is not None:
                await self.get(merchant_id, where.endpoint_id)
            # By event: the event's sequence (events.id is unique) on the
            # merchant's index; no index of event_id (migration 0023: every
            # write of a delivery paid an entry in one for this reader alone).
            rows = await conn.fetch(
                """SELECT d.* FROM webhook_deliveries d
                    WHERE d.merchant_id = $1
                      AND ($2::text IS NULL OR d.endpoint_id = $2)
                      AND ($3::uuid IS NULL
                           OR (d.event_sequence = (SELECT sequence FROM events WHERE id = $3)
                               AND d.event_id = $3))
                      AND ($4::text IS NULL OR d.status = $4)
                      AND ($5::bigint IS NULL OR (d.event_sequence, d.id) < ($5, $6::uuid))
                    ORDER BY d.event_sequence DESC, d.id DESC LIMIT $7""",
                merchant_id,
                where.endpoint_id,
                where.event_id,
                where.status,
                after[0] if after else None,
                after[1] if after else None,
                page_size + 1,
            )
            ids = [r["id"] for r in rows[:page_size]]
            attempts: dict[uuid.UUID, list[asyncpg.Record]] = {i: [] for i in ids}
            for a in await conn.fetch(
                """SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[])
                    ORDER BY delivery_id, attempt""",
                ids,
            ):
                attempts[a["delivery_id"]].append(a)
        return list(rows), attempts

    async def redeliver(
        self, merchant_id: str, endpoint_id: str, target: RedeliverTarget, now: datetime
    ) -> int:
        """Queues the target's events for the endpoint again, now, with a
        fresh retry period; events it never had get their delivery created.
        Returns how many deliveries were queued."""
        give_up = now + timedelta(seconds=self.give_up_after_s)
        async with self.pool.acquire() as conn, conn.transaction():
            endpoint = await self.get(merchant_id, endpoint_id)
            if target.delivery_id is not None:
                count = await conn.fetchval(
                    """WITH q AS (
                         UPDATE webhook_deliveries
                            SET status = 'pending', next_attempt_time = $3, give_up_time = $4,
                                update_time = $3
                          WHERE id = $1 AND endpoint_id = $2 RETURNING 1)
                       SELECT count(*) FROM q""",
                    target.delivery_id,
                    endpoint_id,
                    now,
                    give_up,
                )
                if not count:
                    raise not_found(
                        "webhook_delivery",
                        f"{endpoint_name(merchant_id, endpoint_id)}/deliveries/{target.delivery_id}",
                    )
                return int(count)
            # One event by id, or every event of the range the endpoint selects.
            # The merchant's own events only: a delivery's merchant_id is its
            # event's, which makes (merchant_id, event_sequence, endpoint_id),
            # the conflict target (migration 0027), unique per endpoint and event.
            count = await conn.fetchval(
                f"""WITH picked AS (
                     SELECT sequence, id, type, resource_name FROM events
                      WHERE merchant_id = $2
                        AND ($3::uuid IS NULL OR id = $3)
                        AND ($4::timestamptz IS NULL OR create_time >= $4)
                        AND ($5::timestamptz IS NULL OR create_time < $5)
                        AND ($3::uuid IS NOT NULL OR cardinality($6::text[]) = 0
                             OR type = ANY($6::text[]))),
                   q AS (
                     INSERT INTO webhook_deliveries
                       (id, endpoint_id, merchant_id, event_sequence, event_id, event_type,
                        resource_name, status, next_attempt_time, give_up_time, create_time,
                        update_time)
                     SELECT {time_ordered_id("$9")}, $1, $2, sequence, id, type, resource_name,
                            'pending', $7, $8, $7, $7
                       FROM picked
                     ON CONFLICT (merchant_id, event_sequence, endpoint_id) DO UPDATE
                        SET status = 'pending', next_attempt_time = $7, give_up_time = $8,
                            update_time = $7
                     RETURNING 1)
                   SELECT count(*) FROM q""",  # noqa: S608 (a constant, no input)
                endpoint_id,
                merchant_id,
                target.event_id,
                target.start_time,
                target.end_time,
                list(endpoint["event_types"]),
                now,
                give_up,
                time_ordered_prefix(now),
            )
            if target.event_id is not None and not count:
                raise Refusal(
                    Code.NOT_FOUND,
                    "EVENT_NOT_FOUND",
                    f"event {target.event_id} not found for {names.merchant(merchant_id)}",
                    metadata={"event_id": str(target.event_id)},
                )
            return int(count)
