"""Sends stored deliveries: claim, send outside any transaction, record.

A worker claims due deliveries with SELECT … FOR UPDATE SKIP LOCKED and
leases them (next_attempt_time moves to the end of the attempt's timeout
plus a grace), commits, sends with a hard timeout, then records the attempt
and what `retry.decide` says. A process that dies mid-attempt leaves the
lease to run out, and any worker retries: delivery is at least once, and
the event id (Kassa-Event-Id) lets receivers drop the duplicate.

Order: per endpoint and resource (an invoice), a delivery is sent only when
no earlier one is still pending, so each invoice's events arrive in sequence
order; other invoices and other endpoints are not held up by a failing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import asyncpg

from core import metrics
from core.events.stream import OutboxNotifier
from core.render import events as resources
from core.webhooks import retry, signing, targets
from core.webhooks.dispatch import BATCH, dispatch_once
from core.webhooks.sealing import Keyring, SealError, unseal
from core.webhooks.settings import WebhookSettings

log = logging.getLogger("kassa.core.webhooks")
USER_AGENT = "Kassa-Webhooks/1"
MAX_ERROR_LEN = 500


@dataclass(frozen=True)
class Claimed:
    delivery_id: uuid.UUID
    attempt: int
    give_up_time: datetime
    url: str
    signing_secrets: list[str]
    event_id: str
    event_type: str
    body: bytes


def signing_secrets(endpoint: asyncpg.Record, now: datetime, keyring: Keyring) -> list[str]:
    """The current secret, and the previous one while its overlap lasts, unsealed
    (a row not yet re-sealed at start may hold them in clear)."""

    def opened(sealed_column: str, plain_column: str) -> str | None:
        sealed = endpoint[sealed_column]
        if sealed is not None:
            return unseal(keyring, endpoint["id"], bytes(sealed))
        plain = endpoint[plain_column]
        return None if plain is None else str(plain)

    current = opened("secret_sealed", "secret")
    assert current is not None, "one form of the secret is always stored"
    found = [current]
    expire = endpoint["previous_secret_expire_time"]
    if expire is not None and now < expire:
        previous = opened("previous_secret_sealed", "previous_secret")
        if previous:
            found.append(previous)
    return found


def client_session(settings: WebhookSettings) -> aiohttp.ClientSession:
    """The one HTTP client of deliveries: its resolver drops internal
    addresses, and the connector connects to exactly what it returned (the
    checked address is the pinned one); no proxies from the environment."""
    connector = aiohttp.TCPConnector(
        resolver=targets.resolver(settings.allow_private_targets),
        limit=settings.concurrency,
    )
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)


def headers(claimed: Claimed, now: datetime) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Kassa-Event-Id": claimed.event_id,
        "Kassa-Event-Type": claimed.event_type,
        "Kassa-Delivery-Id": str(claimed.delivery_id),
        "Kassa-Signature": signing.header(
            claimed.signing_secrets, int(now.timestamp()), claimed.body
        ),
    }


async def claim(
    pool: asyncpg.Pool, limit: int, now: datetime, lease_s: float, keyring: Keyring
) -> list[Claimed]:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """WITH due AS (
                 SELECT d.id FROM webhook_deliveries d
                  WHERE d.status = 'pending' AND d.next_attempt_time <= $1
                    AND NOT EXISTS (
                      SELECT 1 FROM webhook_deliveries p
                       WHERE p.endpoint_id = d.endpoint_id AND p.resource_name = d.resource_name
                         AND p.status = 'pending' AND p.event_sequence < d.event_sequence)
                  -- Index order, so the scan stops at LIMIT; the order
                  -- between invoices does not matter, within one NOT EXISTS keeps it.
                  ORDER BY d.next_attempt_time
                  LIMIT $2
                  FOR UPDATE OF d SKIP LOCKED)
               UPDATE webhook_deliveries d
                  SET next_attempt_time = $3, attempt_count = d.attempt_count + 1,
                      update_time = $1
                 FROM due WHERE d.id = due.id
             RETURNING d.id, d.attempt_count, d.give_up_time, d.event_id, d.event_type,
                       d.event_sequence, d.endpoint_id""",
            now,
            limit,
            now + timedelta(seconds=lease_s),
        )
        if not rows:
            return []
        endpoints = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT * FROM webhook_endpoints WHERE id = ANY($1::text[])",
                list({r["endpoint_id"] for r in rows}),
            )
        }
        events = {
            r["sequence"]: r
            for r in await conn.fetch(
                """SELECT sequence, id, type, resource_type, payload, create_time FROM events
                    WHERE sequence = ANY($1::bigint[])""",
                list({r["event_sequence"] for r in rows}),
            )
        }
    return [
        Claimed(
            delivery_id=r["id"],
            attempt=r["attempt_count"],
            give_up_time=r["give_up_time"],
            url=endpoints[r["endpoint_id"]]["url"],
            signing_secrets=signing_secrets(endpoints[r["endpoint_id"]], now, keyring),
            event_id=str(r["event_id"]),
            event_type=r["event_type"],
            body=resources.to_json(resources.event(events[r["event_sequence"]])),
        )
        for r in rows
    ]


async def record(
    pool: asyncpg.Pool,
    claimed: Claimed,
    started: datetime,
    duration_ms: int,
    outcome: retry.Outcome,
    decision: retry.Decision,
    now: datetime,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO webhook_attempts
                 (delivery_id, attempt, attempt_time, status_code, error, duration_ms)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            claimed.delivery_id,
            claimed.attempt,
            started,
            outcome.status_code,
            outcome.error[:MAX_ERROR_LEN],
            duration_ms,
        )
        # Only the holder of the current attempt decides; a redelivery or a
        # re-claim after a lost lease has moved attempt_count on.
        await conn.execute(
            """UPDATE webhook_deliveries
                  SET status = $3, next_attempt_time = coalesce($4, next_attempt_time),
                      update_time = $5
                WHERE id = $1 AND attempt_count = $2 AND status = 'pending'""",
            claimed.delivery_id,
            claimed.attempt,
            decision.status.value,
            decision.next_attempt_time,
            now,
        )


class DeliveryWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        notifier: OutboxNotifier,
        settings: WebhookSettings,
        clock: Callable[[], datetime],
        keyring: Keyring,
    ) -> None:
        self.pool = pool
        self.notifier = notifier
        self.settings = settings
        self.clock = clock
        self.keyring = keyring
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._claim_batch = max(1, settings.concurrency // 4)

    async def run(self) -> None:
        async with client_session(self.settings) as session:
            dispatcher = asyncio.create_task(self._dispatch(), name="webhooks dispatch")
            try:
                await self._send_loop(session)
            finally:
                dispatcher.cancel()
                for task in [dispatcher, *self._in_flight]:
                    task.cancel()
                for task in [dispatcher, *self._in_flight]:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _dispatch(self) -> None:
        while True:
            generation = self.notifier.generation
            try:
                consumed, created = await dispatch_once(
                    self.pool, self.clock(), self.settings.policy.give_up_after_s
                )
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("webhook dispatch failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(self.settings.poll_interval_s)
                continue
            if created:
                self._wake.set()
            if consumed < BATCH:
                await self.notifier.wait(generation)

    async def _send_loop(self, session: aiohttp.ClientSession) -> None:
        lease_s = self.settings.timeout_s + self.settings.lease_grace_s
        while True:
            self._wake.clear()
            # Claim no more than can be sent at once, and (under load) only
            # once a quarter of the slots are free: a claim scans the pending
            # deliveries, so one per finished attempt would cost O(pending) each.
            free = self.settings.concurrency - len(self._in_flight)
            claimed: list[Claimed] = []
            if free and (free >= self._claim_batch or not self._in_flight):
                try:
                    claimed = await claim(self.pool, free, self.clock(), lease_s, self.keyring)
                except (asyncpg.PostgresError, OSError, SealError) as exc:
                    # A SealError names the endpoint and KEK, never the secret.
                    log.warning("webhook claim failed; retrying", extra={"error": str(exc)})
            for item in claimed:
                task = asyncio.create_task(self._attempt(session, item))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if claimed and len(claimed) == free:
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), await self._idle_s())

    async def _idle_s(self) -> float:
        """Until the next delivery falls due, at most poll_interval_s."""
        try:
            async with self.pool.acquire() as conn:
                due = await conn.fetchval(
                    "SELECT min(next_attempt_time) FROM webhook_deliveries WHERE status = 'pending'"
                )
        except (asyncpg.PostgresError, OSError):
            return self.settings.poll_interval_s
        if due is None:
            return self.settings.poll_interval_s
        wait_s = (due - self.clock()).total_seconds()
        # Due but not claimed: held behind an earlier event in flight, whose end wakes us.
        if wait_s <= 0:
            return self.settings.poll_interval_s
        return float(min(self.settings.poll_interval_s, wait_s))

    async def _attempt(self, session: aiohttp.ClientSession, claimed: Claimed) -> None:
        try:
            started = self.clock()
            t0 = time.monotonic()
            try:
                outcome = await self.send(session, claimed, started)
            except Exception as exc:
                # Whatever went wrong sending is a failed attempt, recorded and
                # retried on the schedule, never an attempt that vanishes.
                log.exception(
                    "webhook attempt raised", extra={"delivery": str(claimed.delivery_id)}
                )
                outcome = retry.Outcome(None, f"internal error sending ({type(exc).__name__})")
            duration_ms = int((time.monotonic() - t0) * 1000)
            now = self.clock()
            decision = retry.decide(
                self.settings.policy,
                claimed.attempt,
                outcome,
                now,
                claimed.give_up_time,
                random.random(),
            )
            await record(self.pool, claimed, started, duration_ms, outcome, decision, now)
            metrics.WEBHOOK_ATTEMPTS.labels(decision.status.value).inc()
            log.info(
                "webhook attempt",
                extra={
                    "delivery": str(claimed.delivery_id),
                    "event_id": claimed.event_id,
                    "attempt": claimed.attempt,
                    "status_code": outcome.status_code,
                    "error": outcome.error,
                    "decision": decision.status.value,
                },
            )
        except Exception as exc:  # the database, mostly: asyncpg.InterfaceError included
            # The lease runs out and the attempt is made again.
            log.warning("webhook attempt not recorded", extra={"error": type(exc).__name__})
        finally:
            self._wake.set()

    async def send(
        self, session: aiohttp.ClientSession, claimed: Claimed, now: datetime
    ) -> retry.Outcome:
        problem = targets.url_problem(claimed.url, self.settings.allow_private_targets)
        if problem is not None:
            return retry.Outcome(400, f"not sent: the URL {problem}")
        try:
            async with session.post(
                claimed.url, data=claimed.body, headers=headers(claimed, now), allow_redirects=False
            ) as response:
                # Drain a little so the connection can be reused; the body is ignored.
                await response.content.read(4096)
                ok = 200 <= response.status < 300
                return retry.Outcome(
                    response.status,
                    "" if ok else f"HTTP {response.status} {response.reason or ''}".strip(),
                    retry.parse_retry_after(response.headers.get("Retry-After"), self.clock()),
                )
        except TimeoutError:
            return retry.Outcome(None, f"timeout after {self.settings.timeout_s:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return retry.Outcome(None, f"{type(exc).__name__}: {exc}")
