"""Publishes the outbox to JetStream in sequence order: the one writer to the stream.

Runs only on the replica that leads `relay`. It writes nothing to
PostgreSQL, so its fence is the stream itself: every message names the
previous event as the stream's expected last message, and a publish that
would leave a gap or reorder (a deposed relay, a retry after a later
message) is refused by JetStream. After any error it re-reads the stream's
last message and carries on from there.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from core.events.stream import OutboxNotifier
from core.leadership.fence import Fence
from core.relay import subjects
from core.relay.settings import JetStreamSettings
from core.relay.subjects import Published
from core.render import events as resources

log = logging.getLogger("kassa.core.relay")
BATCH = 500
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


class Relay:
    def __init__(
        self, pool: asyncpg.Pool, notifier: OutboxNotifier, settings: JetStreamSettings
    ) -> None:
        self.pool = pool
        self.notifier = notifier
        self.settings = settings
        # The last event the stream is known to hold (None: empty or not read yet).
        self.published: Published | None = None
        self.messages_published = 0

    def relayed(self) -> int | None:
        """The last sequence the stream holds, while this replica relays (the
        metrics sampler); None when it does not lead the relay or has not read it."""
        return self.published.sequence if self.published is not None else None

    async def run(self, _fence: Fence) -> None:
        """Relays until cancelled; reconnects after any failure of NATS."""
        try:
            while True:
                nc: NatsClient | None = None
                try:
                    nc = await nats.connect(
                        servers=list(self.settings.servers),
                        name="kassa-relay",
                        connect_timeout=self.settings.publish_timeout_s,
                        reconnect_time_wait=0.5,
                        max_reconnect_attempts=-1,
                        allow_reconnect=True,
                    )
                    js = nc.jetstream(timeout=self.settings.publish_timeout_s)
                    await self._ensure_stream(js)
                    await self._relay(js)
                except asyncio.CancelledError:
                    raise
                except _NATS_ERRORS as exc:
                    log.warning("jetstream relay interrupted", extra={"error": repr(exc)[:300]})
                finally:
                    if nc is not None:
                        try:
                            await asyncio.wait_for(nc.close(), 5)
                        except Exception as exc:  # closing a broken connection
                            log.info(
                                "jetstream connection closed", extra={"error": type(exc).__name__}
                            )
                await asyncio.sleep(1.0)
        finally:
            # Deposed or stopped: the leader's relay reports the position, not this one.
            self.published = None

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        try:
            await js.stream_info(self.settings.stream)
            return
        except nats.js.errors.NotFoundError:
            pass
        await js.add_stream(
            StreamConfig(
                name=self.settings.stream,
                subjects=[subjects.wildcard(self.settings.subject_prefix)],
                num_replicas=self.settings.replicas,
                duplicate_window=self.settings.duplicate_window_s,
                storage=StorageType.FILE,
            )
        )
        log.info("jetstream stream created", extra={"stream": self.settings.stream})

    async def _last_in_stream(self, js: JetStreamContext) -> Published | None:
        info = await js.stream_info(self.settings.stream)
        last_seq = info.state.last_seq
        if not last_seq:
            return None
        msg = await js.get_msg(self.settings.stream, seq=last_seq)
        headers = msg.headers or {}
        assert subjects.SEQUENCE_HEADER in headers, "a message in the stream not from the relay"
        return Published(int(headers[subjects.SEQUENCE_HEADER]), headers[subjects.MSG_ID_HEADER])

    async def _relay(self, js: JetStreamContext) -> None:
        self.published = await self._last_in_stream(js)
        after = subjects.resume_after(self.published, 0)
        log.info("jetstream relay resuming", extra={"after_sequence": after})
        while True:
            generation = self.notifier.generation
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT sequence, id, type, merchant_id, resource_type, payload, create_time
                         FROM events WHERE sequence > $1 ORDER BY sequence LIMIT $2""",
                    after,
                    BATCH,
                )
            if not rows:
                await self.notifier.wait(generation)
                continue
            for row in rows:
                # Outbox sequences are gapless and commit in order (core/events/outbox.py).
                assert row["sequence"] == after + 1, (row["sequence"], after)
                try:
                    await self._publish(js, row)
                except nats.js.errors.APIError as exc:
                    # Refused by the stream (expected last message): it holds
                    # more, or other, than we thought. Carry on from what it holds.
                    log.warning(
                        "jetstream refused a publish; re-reading the stream",
                        extra={"sequence": row["sequence"], "error": repr(exc)[:300]},
                    )
                    self.published = await self._last_in_stream(js)
                    after = subjects.resume_after(self.published, 0)
                    break
                except (nats.errors.TimeoutError, TimeoutError):
                    # Stored or not, we cannot tell: the stream can.
                    await asyncio.sleep(0.2)
                    self.published = await self._last_in_stream(js)
                    after = subjects.resume_after(self.published, 0)
                    break
                after = row["sequence"]

    async def _publish(self, js: JetStreamContext, row: asyncpg.Record) -> None:
        event_id = str(row["id"])
        t0 = time.monotonic()
        ack = await js.publish(
            subjects.subject(self.settings.subject_prefix, row["merchant_id"], row["type"]),
            resources.to_json(resources.event(row)),
            timeout=self.settings.publish_timeout_s,
            stream=self.settings.stream,
            headers=subjects.headers(event_id, row["sequence"], self.published),
        )
        assert ack.stream == self.settings.stream, ack
        self.published = Published(row["sequence"], event_id)
        self.messages_published += 0 if ack.duplicate else 1
        if time.monotonic() - t0 > 1.0:
            log.info("slow jetstream publish", extra={"sequence": row["sequence"]})
