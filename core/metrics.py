"""The core's domain metrics: chains it follows and what waits in PostgreSQL.

The chain gauges are set by each ChainFollower as events arrive (the lag in
seconds by the sampler, so that it grows while nothing arrives); the backlog
gauges (outbox, webhook deliveries, payouts) are read from PostgreSQL by one
sampler every `interval_s`, in read-only statements, so a scrape never
touches the database; invoices by state and flag take a scan of the
invoices table and are counted every INVOICE_SAMPLE_EVERY samples only.
Ledger postings and refusals are counted by the ledger's one writer
(core/ledger/store.post), webhook attempts by the delivery worker.
`kassa_core_database_up` is 0 while the sampler cannot read PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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
WEBHOOK_ATTEMPTS = Counter(
    "kassa_webhook_attempts",
    "Webhook delivery attempts by outcome: succeeded, pending (failed, will be retried) or "
    "failed (failed and given up).",
    ["outcome"],
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

# Seconds as float8: the pool decodes numeric as an integer (amounts are numeric(78,0)).
SAMPLE = """
SELECT
  (SELECT last FROM event_sequence WHERE id = 1) AS outbox_head,
  (SELECT last_sequence FROM webhook_dispatch_cursor WHERE id = 1) AS dispatched,
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending,
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'failed') AS failed,
  (SELECT extract(epoch FROM now() - min(create_time))::float8
     FROM webhook_deliveries WHERE status = 'pending') AS oldest_pending_s
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


async def sample(pool: Any, invoices: bool = True) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SAMPLE)
        payouts = await conn.fetch(PAYOUT_STATES)
        invoice_rows = await conn.fetch(INVOICE_STATES) if invoices else None
    OUTBOX_HEAD.set(row["outbox_head"] or 0)
    OUTBOX_BACKLOG.set(max(0, (row["outbox_head"] or 0) - (row["dispatched"] or 0)))
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


async def run(pool: Any, interval_s: float) -> None:
    """Samples forever; a failed sample sets database_up to 0 and is logged once per outage."""
    down = False
    samples = 0
    while True:
        refresh_lag()  # without the database too: a stalled chain's lag keeps growing
        try:
            await sample(pool, invoices=samples % INVOICE_SAMPLE_EVERY == 0)
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
