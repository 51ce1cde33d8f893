"""The core's domain metrics: chains it follows and what waits in PostgreSQL.

The chain gauges are set by each ChainFollower as events arrive; the backlog
gauges (outbox, webhook deliveries, payouts) are read from PostgreSQL by one
sampler every `interval_s`, in one read-only statement, so a scrape never
touches the database. `kassa_core_database_up` is 0 while it cannot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger("kassa.core.metrics")

CHAIN_HEAD = Gauge(
    "kassa_chain_head_height", "The adapter's head height as last streamed, per chain.", ["chain"]
)
CHAIN_APPLIED = Gauge(
    "kassa_chain_applied_height", "Height of the last block the core applied, per chain.", ["chain"]
)
CHAIN_LAG = Gauge(
    "kassa_chain_lag_blocks",
    "Adapter head minus last applied height, per chain (blocks the core is behind).",
    ["chain"],
)
CHAIN_STREAMING = Gauge(
    "kassa_chain_streaming", "1 while the chain's adapter block stream is open, else 0.", ["chain"]
)
CHAIN_BLOCKS = Counter("kassa_chain_blocks_applied", "Blocks applied, per chain.", ["chain"])
CHAIN_REORGS = Counter("kassa_chain_reorgs", "Undo events applied (reorgs), per chain.", ["chain"])
CHAIN_STREAM_ENDS = Counter(
    "kassa_chain_stream_ends", "Adapter block streams that ended or failed, per chain.", ["chain"]
)
DATABASE_UP = Gauge("kassa_core_database_up", "1 when the last sample read PostgreSQL, else 0.")
OUTBOX_HEAD = Gauge("kassa_outbox_head_sequence", "Sequence of the newest event in the outbox.")
OUTBOX_BACKLOG = Gauge(
    "kassa_outbox_webhook_backlog_events",
    "Outbox events not yet fanned out to webhook deliveries (head minus dispatch cursor).",
)
WEBHOOK_DELIVERIES = Gauge(
    "kassa_webhook_deliveries", "Webhook deliveries by status (pending, failed).", ["status"]
)
WEBHOOK_OLDEST_PENDING = Gauge(
    "kassa_webhook_oldest_pending_age_seconds", "Age of the oldest pending webhook delivery."
)
PAYOUTS = Gauge("kassa_payouts", "Payouts and refunds by kind and state.", ["kind", "state"])

SAMPLE = """
SELECT
  (SELECT last FROM event_sequence WHERE id = 1) AS outbox_head,
  (SELECT last_sequence FROM webhook_dispatch_cursor WHERE id = 1) AS dispatched,
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending,
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'failed') AS failed,
  (SELECT extract(epoch FROM now() - min(create_time))
     FROM webhook_deliveries WHERE status = 'pending') AS oldest_pending_s
"""
_payout_labels: set[tuple[str, str]] = set()
PAYOUT_STATES = "SELECT kind, state, count(*) AS n FROM payouts GROUP BY kind, state"


def chain_followed(chain: str, applied: int | None, head: int | None) -> None:
    if applied is not None:
        CHAIN_APPLIED.labels(chain).set(applied)
    if head is not None:
        CHAIN_HEAD.labels(chain).set(head)
    if applied is not None and head is not None:
        CHAIN_LAG.labels(chain).set(max(0, head - applied))


async def sample(pool: Any) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SAMPLE)
        payouts = await conn.fetch(PAYOUT_STATES)
    OUTBOX_HEAD.set(row["outbox_head"] or 0)
    OUTBOX_BACKLOG.set(max(0, (row["outbox_head"] or 0) - (row["dispatched"] or 0)))
    WEBHOOK_DELIVERIES.labels("pending").set(row["pending"])
    WEBHOOK_DELIVERIES.labels("failed").set(row["failed"])
    WEBHOOK_OLDEST_PENDING.set(float(row["oldest_pending_s"] or 0))
    # States that emptied since the last sample read 0, not their old count.
    seen = {(str(r["kind"]), str(r["state"])) for r in payouts}
    for kind, state in _payout_labels - seen:
        PAYOUTS.labels(kind, state).set(0)
    _payout_labels.update(seen)
    for r in payouts:
        PAYOUTS.labels(r["kind"], r["state"]).set(r["n"])


async def run(pool: Any, interval_s: float) -> None:
    """Samples forever; a failed sample sets database_up to 0 and is logged once per outage."""
    down = False
    while True:
        try:
            await sample(pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            DATABASE_UP.set(0)
            if not down:
                log.warning("metrics sample failed", extra={"error": repr(exc)})
            down = True
        else:
            DATABASE_UP.set(1)
            if down:
                log.info("metrics sample recovered")
            down = False
        await asyncio.sleep(interval_s)
