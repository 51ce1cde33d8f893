"""The core's domain metrics: chains it follows and what waits in PostgreSQL.

The chain gauges are set by each ChainFollower as events arrive (the lag in
seconds by the sampler, so that it grows while nothing arrives); the backlog
gauges (outbox, webhook deliveries, payouts) are read from PostgreSQL by one
sampler every `interval_s`, in read-only statements, so a scrape never
touches the database; invoices by state and flag take a scan of the
invoices table and are counted every INVOICE_SAMPLE_EVERY samples only, the
support queue (its own reads and decider, walked to the end) every
SUPPORT_SAMPLE_EVERY. The outbox's consumers are compared with its head by
kind: the webhook dispatcher (its cursor), StreamEvents (in-process
positions: core/events/stream.POSITIONS) and the JetStream relay.
Ledger postings and refusals are counted by the ledger's one writer
(core/ledger/store.post), webhook attempts by the delivery worker.
`kassa_core_database_up` is 0 while the sampler cannot read PostgreSQL;
`kassa_core_signer_up` 0 while the signer link is down (core/signer_link).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from core.events.stream import POSITIONS
from core.support import queue as support_queue
from core.support.settings import SupportSettings

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
CHAIN_LAG_SECONDS = Gauge(
    "kassa_chain_lag_seconds",
    "Seconds since the timestamp of the last block the core applied, per chain; grows while "
    "nothing is applied.",
    ["chain"],
)
CHAIN_BLOCKS = Counter("kassa_chain_blocks_applied", "Blocks applied, per chain.", ["chain"])
CHAIN_APPLY_SECONDS = Histogram(
    "kassa_chain_block_apply_seconds",
    "Time to apply one block (payments, ledger postings, events) in PostgreSQL, per chain.",
    ["chain"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHAIN_REORGS = Counter("kassa_chain_reorgs", "Undo events applied (reorgs), per chain.", ["chain"])
CHAIN_REORG_DEPTH = Histogram(
    "kassa_chain_reorg_depth_blocks",
    "Blocks each reorg undid (applied height before the Undo minus its target), per chain.",
    ["chain"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128),
)
CHAIN_STREAM_ENDS = Counter(
    "kassa_chain_stream_ends", "Adapter block streams that ended or failed, per chain.", ["chain"]
)
DATABASE_UP = Gauge("kassa_core_database_up", "1 when the last sample read PostgreSQL, else 0.")
# Set by core/signer_link/probe.py; absent without [signer].
SIGNER_UP = Gauge(
    "kassa_core_signer_up",
    "1 while the signer answers the core's key lookup over its link and is SERVING, else 0.",
    ["target"],
)
OUTBOX_HEAD = Gauge("kassa_outbox_head_sequence", "Sequence of the newest event in the outbox.")
OUTBOX_BACKLOG = Gauge(
    "kassa_outbox_webhook_backlog_events",
    "Outbox events not yet fanned out to webhook deliveries (head minus dispatch cursor).",
)
# One series per consumer kind (webhooks, stream, jetstream): bounded, never per stream.
OUTBOX_CONSUMER_SEQUENCE = Gauge(
    "kassa_outbox_consumer_sequence",
    "Last outbox sequence each consumer kind has read: webhooks (dispatch cursor), stream "
    "(the shared in-memory tail of StreamEvents), jetstream (last relayed, on the relay leader).",
    ["consumer"],
)
OUTBOX_CONSUMER_BACKLOG = Gauge(
    "kassa_outbox_consumer_backlog_events",
    "Outbox head minus each consumer kind's position: webhooks, stream (the largest lag of "
    "any open StreamEvents stream, 0 with none open), jetstream (on the relay leader).",
    ["consumer"],
)
OUTBOX_STREAMS_OPEN = Gauge(
    "kassa_outbox_streams_open", "StreamEvents streams open on this process."
)
SUPPORT_ITEMS = Gauge(
    "kassa_support_queue_items", "Items the support queue shows, by kind.", ["kind"]
)
SUPPORT_OLDEST = Gauge(
    "kassa_support_queue_oldest_age_seconds",
    "Per kind, seconds since the oldest item the support queue shows began waiting.",
    ["kind"],
)
SUPPORT_PENDING_APPROVAL = Gauge(
    "kassa_support_actions_pending_approval",
    "Support actions recorded and waiting for a second operator's approval.",
)
WEBHOOK_DELIVERIES = Gauge(
    "kassa_webhook_deliveries", "Webhook deliveries by status (pending, failed).", ["status"]
)
WEBHOOK_OLDEST_PENDING = Gauge(
    "kassa_webhook_oldest_pending_age_seconds", "Age of the oldest pending webhook delivery."
)
WEBHOOK_ATTEMPTS = Counter(
    "kassa_webhook_attempts",
    "Webhook delivery attempts by outcome: succeeded, pending (failed, will be retried) or "
    "failed (failed and given up).",
    ["outcome"],
)
# The delivery processes (core/webhooks/supervisor.py); their attempts are
# added to WEBHOOK_ATTEMPTS above from their reports.
WEBHOOK_PROCESS_RESTARTS = Counter(
    "kassa_webhook_delivery_process_restarts",
    "Webhook delivery processes that ended unasked and were started again, by process.",
    ["process"],
)
WEBHOOK_PROCESS_UP = Gauge(
    "kassa_webhook_delivery_process_up",
    "1 while the webhook delivery process runs and reports, else 0.",
    ["process"],
)
WEBHOOK_PROCESS_DATABASE_OK = Gauge(
    "kassa_webhook_delivery_process_database_ok",
    "1 while the webhook delivery process reaches the database (its last report), else 0.",
    ["process"],
)
PAYOUTS = Gauge("kassa_payouts", "Payouts and refunds by kind and state.", ["kind", "state"])
PAYOUTS_OLDEST = Gauge(
    "kassa_payouts_oldest_age_seconds",
    "Per kind and state, seconds since the longest-waiting payout last changed (entered it).",
    ["kind", "state"],
)
INVOICES = Gauge("kassa_invoices", "Invoices by state.", ["state"])
INVOICES_FLAGGED = Gauge(
    "kassa_invoices_flagged",
    "Invoices carrying each flag (one invoice may carry several).",
    ["flag"],
)
LEDGER_POSTINGS = Counter(
    "kassa_ledger_postings",
    "Ledger transfers posted (new), by every writer: API, payments, payouts, expiry.",
)
LEDGER_REFUSALS = Counter(
    "kassa_ledger_refusals", "Ledger transfers refused, by reason (kassa.ledger).", ["reason"]
)
# Invoices are counted every this many samples (a scan of the table: ~1 min by default).
INVOICE_SAMPLE_EVERY = 12
# The support queue is walked to its end (four reads and the notes per 500
# candidates, core/support/queue.counts) every this many samples: ~30 s by default.
SUPPORT_SAMPLE_EVERY = 6

# Seconds as float8: the pool decodes numeric as an integer (amounts are numeric(78,0)).
# The pending deliveries are read once for their count and the oldest (they
# were two walks of webhook_deliveries_order, each visiting every pending
# row: 3,000 pending, 1.4 -> 0.5 ms for the two gauges); they are the backlog,
# so their cost follows it. The failed ones are a number kept by triggers
# (migration 0033): their count over an index grew with the history forever.
# In the events bench the sample took 1.5 ms a call, 6.5 us per delivery.
SAMPLE = """
SELECT
  (SELECT last FROM event_sequence WHERE id = 1) AS outbox_head,
  (SELECT last_sequence FROM webhook_dispatch_cursor WHERE id = 1) AS dispatched,
  p.pending, p.oldest_pending_s,
  (SELECT deliveries FROM webhook_delivery_counts WHERE status = 'failed') AS failed,
  (SELECT count(*) FROM support_actions WHERE state = 'pending_approval') AS pending_approval
  FROM (SELECT count(*) AS pending,
               extract(epoch FROM now() - min(create_time))::float8 AS oldest_pending_s
          FROM webhook_deliveries WHERE status = 'pending') AS p
"""
_labels: dict[str, set[tuple[str, ...]]] = {}
PAYOUT_STATES = """
SELECT kind, state, count(*) AS n, extract(epoch FROM now() - min(update_time))::float8 AS oldest_s
  FROM payouts GROUP BY kind, state
"""
INVOICE_STATES = "SELECT state, flags, count(*) AS n FROM invoices GROUP BY state, flags"
# chain -> when its last applied block was made (POSIX seconds, the block's timestamp).
_last_block_s: dict[str, float] = {}


def block_applied(chain: str, block_time_s: float, apply_s: float) -> None:
    CHAIN_BLOCKS.labels(chain).inc()
    CHAIN_APPLY_SECONDS.labels(chain).observe(apply_s)
    if block_time_s > 0:
        _last_block_s[chain] = block_time_s
        CHAIN_LAG_SECONDS.labels(chain).set(max(0.0, time.time() - block_time_s))


def reorged(chain: str, depth_blocks: int) -> None:
    assert depth_blocks >= 0, "an Undo never moves the applied height up"
    CHAIN_REORGS.labels(chain).inc()
    CHAIN_REORG_DEPTH.labels(chain).observe(depth_blocks)


def ledger_posted(results: Sequence[Any]) -> None:
    """Counts a posted batch's results (rules.Result: reason None = accepted)."""
    new = sum(1 for r in results if r.reason is None and not r.existed)
    if new:
        LEDGER_POSTINGS.inc(new)
    for r in results:
        if r.reason is not None:
            LEDGER_REFUSALS.labels(str(r.reason)).inc()


def _set_all(gauge: Gauge, name: str, values: dict[tuple[str, ...], float]) -> None:
    """Sets each labelled value; label sets that emptied since the last sample read 0."""
    seen = _labels.setdefault(name, set())
    for labels in seen - set(values):
        gauge.labels(*labels).set(0)
    seen.update(values)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)


def refresh_lag() -> None:
    now_s = time.time()
    for chain, block_s in _last_block_s.items():
        CHAIN_LAG_SECONDS.labels(chain).set(max(0.0, now_s - block_s))


def chain_followed(chain: str, applied: int | None, head: int | None) -> None:
    if applied is not None:
        CHAIN_APPLIED.labels(chain).set(applied)
    if head is not None:
        CHAIN_HEAD.labels(chain).set(head)
    if applied is not None and head is not None:
        CHAIN_LAG.labels(chain).set(max(0, head - applied))


def consumers(head: int, dispatched: int, relayed: int | None) -> None:
    """Each outbox consumer kind's position and backlog against the head."""
    OUTBOX_HEAD.set(head)
    OUTBOX_BACKLOG.set(max(0, head - dispatched))
    OUTBOX_CONSUMER_SEQUENCE.labels("webhooks").set(dispatched)
    OUTBOX_CONSUMER_BACKLOG.labels("webhooks").set(max(0, head - dispatched))
    streams = POSITIONS.streams()
    OUTBOX_STREAMS_OPEN.set(len(streams))
    if POSITIONS.tail_sequence is not None:
        OUTBOX_CONSUMER_SEQUENCE.labels("stream").set(POSITIONS.tail_sequence)
    OUTBOX_CONSUMER_BACKLOG.labels("stream").set(
        max((max(0, head - s) for s in streams), default=0)
    )
    if relayed is not None:
        OUTBOX_CONSUMER_SEQUENCE.labels("jetstream").set(relayed)
        OUTBOX_CONSUMER_BACKLOG.labels("jetstream").set(max(0, head - relayed))


async def sample(
    pool: Any,
    invoices: bool = True,
    support: SupportSettings | None = None,
    relayed: Callable[[], int | None] | None = None,
) -> None:
    """One sample; `support` set: the support queue is walked too (see
    SUPPORT_SAMPLE_EVERY); `relayed`: the JetStream relay's last relayed
    sequence (None until known, and on a replica that does not lead it)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SAMPLE)
        payouts = await conn.fetch(PAYOUT_STATES)
        invoice_rows = await conn.fetch(INVOICE_STATES) if invoices else None
        now = datetime.now(UTC)
        queue = await support_queue.counts(conn, support, now) if support is not None else None
    consumers(row["outbox_head"] or 0, row["dispatched"] or 0, relayed() if relayed else None)
    SUPPORT_PENDING_APPROVAL.set(row["pending_approval"])
    WEBHOOK_DELIVERIES.labels("pending").set(row["pending"])
    WEBHOOK_DELIVERIES.labels("failed").set(row["failed"])
    WEBHOOK_OLDEST_PENDING.set(float(row["oldest_pending_s"] or 0))
    # States that emptied since the last sample read 0, not their old count.
    _set_all(PAYOUTS, "payouts", {(str(r["kind"]), str(r["state"])): r["n"] for r in payouts})
    _set_all(
        PAYOUTS_OLDEST,
        "payouts_oldest",
        {(str(r["kind"]), str(r["state"])): float(r["oldest_s"] or 0) for r in payouts},
    )
    if invoice_rows is not None:
        states: dict[tuple[str, ...], float] = {}
        flags: dict[tuple[str, ...], float] = {}
        for r in invoice_rows:
            states[(str(r["state"]),)] = states.get((str(r["state"]),), 0) + r["n"]
            for flag in r["flags"]:
                flags[(str(flag),)] = flags.get((str(flag),), 0) + r["n"]
        _set_all(INVOICES, "invoices", states)
        _set_all(INVOICES_FLAGGED, "invoices_flagged", flags)
    if queue is not None:
        _set_all(SUPPORT_ITEMS, "support_items", {(str(k),): n for k, (n, _) in queue.items()})
        _set_all(
            SUPPORT_OLDEST,
            "support_oldest",
            {(str(k),): max(0.0, (now - t).total_seconds()) for k, (_, t) in queue.items()},
        )


async def run(
    pool: Any,
    interval_s: float,
    support: SupportSettings | None = None,
    relayed: Callable[[], int | None] | None = None,
) -> None:
    """Samples forever; a failed sample sets database_up to 0 and is logged once per outage."""
    down = False
    samples = 0
    while True:
        refresh_lag()  # without the database too: a stalled chain's lag keeps growing
        try:
            await sample(
                pool,
                invoices=samples % INVOICE_SAMPLE_EVERY == 0,
                support=support if samples % SUPPORT_SAMPLE_EVERY == 0 else None,
                relayed=relayed,
            )
            samples += 1
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
