"""The support queue, read from the state it is about.

Four sources of candidates (flagged or underpaid invoices, active payouts,
endpoints with failing deliveries, open reconciliation exceptions), each
read in one order — (since, subject) — after a position, merged, and the
facts of each handed to the decider (core/support/decide.py), which says
what needs a person. Operators' notes (support_actions) hide what was
acknowledged or is waiting for a top-up. Reads only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from core.reconcile import exceptions
from core.support import decide
from core.support.settings import SupportSettings

# The WHERE's first line is the predicate of the partial index invoices_support (0013).
_INVOICES = """
SELECT i.id, i.merchant_id, i.chain, i.asset, i.state, i.flags, i.amount_due,
       i.amount_received, i.amount_refunded, i.update_time AS since,
       'merchants/' || i.merchant_id || '/invoices/' || i.id AS subject,
       COALESCE((SELECT sum(p.amount) FROM payouts p
                  WHERE p.invoice_id = i.id AND p.kind = 'refund'
                    AND p.state NOT IN ('confirmed', 'failed', 'cancelled')), 0) AS refunding,
       COALESCE((SELECT array_agg(DISTINCT m.asset) FROM payments m
                  WHERE m.invoice_id = i.id AND NOT m.counted AND m.status <> 'reorged'),
                '{}') AS other_assets
  FROM invoices i
 WHERE (i.state = 'underpaid' OR i.flags && '{paid_over,duplicate,paid_late,wrong_asset}'::text[])
   AND ($1::text IS NULL OR i.id = $1)
   AND ($2::timestamptz IS NULL
        OR (i.update_time, 'merchants/' || i.merchant_id || '/invoices/' || i.id) > ($2, $3))
 ORDER BY since, subject LIMIT $4"""
_PAYOUTS = """
SELECT p.id, p.merchant_id, p.kind, p.state, p.asset, p.amount, p.create_time AS since,
       'merchants/' || p.merchant_id || '/payouts/' || p.id AS subject
  FROM payouts p
 WHERE p.state NOT IN ('confirmed', 'failed', 'cancelled')
   AND (p.state = 'waiting_approval' OR p.create_time <= $5)
   AND ($1::text IS NULL OR p.id = $1)
   AND ($2::timestamptz IS NULL
        OR (p.create_time, 'merchants/' || p.merchant_id || '/payouts/' || p.id) > ($2, $3))
 ORDER BY since, subject LIMIT $4"""
_ENDPOINTS = """
SELECT * FROM (
  SELECT d.merchant_id, d.endpoint_id, min(d.create_time) AS since,
         count(*) FILTER (WHERE d.status = 'failed') AS gave_up,
         count(*) FILTER (WHERE d.status = 'pending') AS retrying,
         'merchants/' || d.merchant_id || '/webhookEndpoints/' || d.endpoint_id AS subject
    FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.delete_time IS NULL
   WHERE (d.status = 'failed' OR (d.status = 'pending' AND d.attempt_count >= $5))
     AND ($1::text IS NULL OR d.endpoint_id = $1)
   GROUP BY d.merchant_id, d.endpoint_id) f
 WHERE ($2::timestamptz IS NULL OR (f.since, f.subject) > ($2, $3))
 ORDER BY since, subject LIMIT $4"""
_MISMATCHES = """
SELECT x.*, x.create_time AS since, 'exceptions/' || x.id AS subject
  FROM exceptions x
 WHERE x.state = 'open'
   AND ($1::text IS NULL OR x.id = $1)
   AND ($2::timestamptz IS NULL OR (x.create_time, 'exceptions/' || x.id) > ($2, $3))
 ORDER BY since, subject LIMIT $4"""


@dataclass
class Item:
    finding: decide.Finding
    subject: str
    since: datetime
    asset: str = ""
    detail: str = ""
    # (type, ref, detail, time)
    evidence: list[tuple[str, str, str, datetime | None]] = field(default_factory=list)
    review: tuple[str, str] | None = None  # (actor, reason)


@dataclass(frozen=True)
class Candidate:
    subject: str
    since: datetime
    facts: decide.Facts
    asset: str
    detail: str
    row: asyncpg.Record


def invoice_facts(row: asyncpg.Record) -> decide.InvoiceFacts:
    return decide.InvoiceFacts(
        chain=row["chain"],
        asset=row["asset"],
        state=row["state"],
        flags=frozenset(row["flags"]),
        amount_due=int(row["amount_due"]),
        received=int(row["amount_received"]),
        refunded=int(row["amount_refunded"]),
        refunding=int(row["refunding"]),
        other_assets=frozenset(row["other_assets"]),
    )


def _candidates(
    rows: dict[str, Sequence[asyncpg.Record]], settings: SupportSettings, now: datetime
) -> list[Candidate]:
    found: list[Candidate] = []
    for r in rows["invoices"]:
        found.append(
            Candidate(
                r["subject"],
                r["since"],
                invoice_facts(r),
                r["asset"],
                f"{r['state']} invoice, flags {','.join(r['flags']) or '-'}: due "
                f"{r['amount_due']}, received {r['amount_received']}, refunded "
                f"{r['amount_refunded']}, refunding {r['refunding']}",
                r,
            )
        )
    for r in rows["payouts"]:
        age_s = (now - r["since"]).total_seconds()
        found.append(
            Candidate(
                r["subject"],
                r["since"],
                decide.PayoutFacts(
                    r["state"], age_s, settings.payout_stuck_after_s, int(r["amount"])
                ),
                r["asset"],
                f"{r['kind']} {r['state']} for {int(age_s)} s",
                r,
            )
        )
    for r in rows["endpoints"]:
        found.append(
            Candidate(
                r["subject"],
                r["since"],
                decide.EndpointFacts(int(r["gave_up"]), int(r["retrying"])),
                "",
                f"{r['gave_up']} deliveries gave up, {r['retrying']} keep failing",
                r,
            )
        )
    for r in rows["mismatches"]:
        found.append(
            Candidate(
                r["subject"],
                r["since"],
                decide.MismatchFacts(
                    int(r["amount"] or 0), exceptions.rebaselinable(r["kind"], r["location"])
                ),
                r["asset"] or "",
                f"{r['resource']}: {r['detail']}",
                r,
            )
        )
    return found


async def _rows(
    conn: asyncpg.Connection,
    kinds: frozenset[str],
    one: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
    settings: SupportSettings,
    now: datetime,
) -> dict[str, Sequence[asyncpg.Record]]:
    """Up to `limit` candidates of each source after the position."""
    at, subject = after if after else (None, "")
    rows: dict[str, Sequence[asyncpg.Record]] = {}
    for source, sql, extra in (
        ("invoices", _INVOICES, ()),
        ("payouts", _PAYOUTS, (now - timedelta(seconds=settings.payout_stuck_after_s),)),
        ("endpoints", _ENDPOINTS, (settings.webhook_failing_attempts,)),
        ("mismatches", _MISMATCHES, ()),
    ):
        wanted = source in kinds
        rows[source] = (
            list(await conn.fetch(sql, one, at, subject, limit, *extra)) if wanted else []
        )
    return rows


_SOURCE_KINDS = {
    "invoices": {
        decide.Kind.INVOICE_UNDERPAID,
        decide.Kind.INVOICE_OVERPAID,
        decide.Kind.INVOICE_PAID_LATE,
        decide.Kind.INVOICE_DUPLICATE,
        decide.Kind.INVOICE_WRONG_ASSET,
        decide.Kind.INVOICE_WRONG_NETWORK,
    },
    "payouts": {decide.Kind.PAYOUT_WAITING_APPROVAL, decide.Kind.PAYOUT_STUCK},
    "endpoints": {decide.Kind.WEBHOOK_ENDPOINT_FAILING},
    "mismatches": {decide.Kind.RECONCILIATION_MISMATCH},
}
assert set().union(*_SOURCE_KINDS.values()) == set(decide.Kind)


def source_of(subject: str) -> tuple[str, str] | None:
    """(source, id) of a subject name."""
    parts = subject.split("/")
    if len(parts) == 2 and parts[0] == "exceptions":
        return "mismatches", parts[1]
    if len(parts) == 4 and parts[0] == "merchants":
        source = {"invoices": "invoices", "payouts": "payouts", "webhookEndpoints": "endpoints"}
        if parts[2] in source:
            return source[parts[2]], parts[3]
    return None


async def notes(
    conn: asyncpg.Connection, subjects: Sequence[str]
) -> dict[str, list[asyncpg.Record]]:
    by: dict[str, list[asyncpg.Record]] = {s: [] for s in subjects}
    for r in await conn.fetch(
        """SELECT * FROM support_actions
            WHERE subject = ANY($1::text[]) AND state = 'done'
              AND action = ANY('{acknowledge,request_top_up,mark_for_review,attach_transaction}')
            ORDER BY create_time""",
        list(subjects),
    ):
        by[r["subject"]].append(r)
    return by


def as_notes(rows: Sequence[asyncpg.Record]) -> list[decide.Note]:
    return [
        decide.Note(
            decide.Kind(r["kind"]), decide.Action(r["action"]), r["fingerprint"], r["until_time"]
        )
        for r in rows
    ]


async def page(
    conn: asyncpg.Connection,
    kinds: frozenset[decide.Kind],
    after: tuple[datetime, str] | None,
    limit: int,
    settings: SupportSettings,
    now: datetime,
) -> tuple[list[Item], tuple[datetime, str] | None]:
    """Items among the next `limit` candidates after the position, and the
    position to continue from (None: the queue ends here)."""
    assert limit > 0
    wanted = frozenset(s for s, ks in _SOURCE_KINDS.items() if ks & kinds)
    rows = await _rows(conn, wanted, None, after, limit + 1, settings, now)
    candidates = sorted(_candidates(rows, settings, now), key=lambda c: (c.since, c.subject))
    more = len(candidates) > limit
    candidates = candidates[:limit]
    items = await _items(conn, candidates, kinds, now)
    last = (candidates[-1].since, candidates[-1].subject) if more and candidates else None
    return items, last


async def of_subject(
    conn: asyncpg.Connection, subject: str, settings: SupportSettings, now: datetime
) -> tuple[decide.Facts, asyncpg.Record] | None:
    """The facts of one subject as it stands (None: nothing about it needs a person)."""
    where = source_of(subject)
    if where is None:
        return None
    source, key = where
    rows = await _rows(conn, frozenset({source}), key, None, 2, settings, now)
    found = [c for c in _candidates(rows, settings, now) if c.subject == subject]
    if not found:
        return None
    return found[0].facts, found[0].row


async def _items(
    conn: asyncpg.Connection,
    candidates: Sequence[Candidate],
    kinds: frozenset[decide.Kind],
    now: datetime,
) -> list[Item]:
    by_subject = await notes(conn, [c.subject for c in candidates])
    items: list[Item] = []
    for c in candidates:
        left = as_notes(by_subject[c.subject])
        for f in decide.classify(c.facts):
            if f.kind not in kinds or not decide.shown(f, left, now):
                continue
            item = Item(f, c.subject, c.since, c.asset, c.detail)
            for n in by_subject[c.subject]:
                if n["kind"] != f.kind:
                    continue
                if n["action"] == decide.Action.MARK_FOR_REVIEW:
                    item.review = (n["actor"], n["reason"])
                elif n["action"] == decide.Action.ATTACH_TRANSACTION:
                    item.evidence.append(
                        (
                            "attachment",
                            n["tx_hash"],
                            f"{n['actor']}: {n['reason']}",
                            n["create_time"],
                        )
                    )
            items.append(item)
    await _evidence(conn, items, {c.subject: c for c in candidates})
    return items


async def _evidence(
    conn: asyncpg.Connection, items: Sequence[Item], candidates: dict[str, Candidate]
) -> None:
    """The transactions, events and deliveries behind each item."""
    subjects = sorted({i.subject for i in items})
    if not subjects:
        return
    found: dict[str, list[tuple[str, str, str, datetime | None]]] = {s: [] for s in subjects}
    ids: dict[str, dict[str, str]] = {"invoices": {}, "payouts": {}, "endpoints": {}}
    for s in subjects:
        where = source_of(s)
        if where is not None and where[0] in ids:
            ids[where[0]][where[1]] = s
    invoice_ids = ids["invoices"]
    for r in await conn.fetch(
        """SELECT invoice_id, tx_hash, asset, amount, status, counted, first_seen_time
             FROM payments WHERE invoice_id = ANY($1::text[]) ORDER BY first_seen_time""",
        list(invoice_ids),
    ):
        found[invoice_ids[r["invoice_id"]]].append(
            (
                "transaction",
                r["tx_hash"],
                f"{r['amount']} {r['asset']} {r['status']}"
                + ("" if r["counted"] else ", not counted"),
                r["first_seen_time"],
            )
        )
    for r in await conn.fetch(
        """SELECT invoice_id, merchant_id, id, state, amount FROM payouts
            WHERE invoice_id = ANY($1::text[]) AND kind = 'refund' ORDER BY create_time""",
        list(invoice_ids),
    ):
        found[invoice_ids[r["invoice_id"]]].append(
            (
                "payout",
                f"merchants/{r['merchant_id']}/payouts/{r['id']}",
                f"refund of {r['amount']}, {r['state']}",
                None,
            )
        )
    payout_ids = ids["payouts"]
    for r in await conn.fetch(
        """SELECT payout_id, tx_hash, status, create_time FROM payout_transactions
            WHERE payout_id = ANY($1::text[]) ORDER BY create_time""",
        list(payout_ids),
    ):
        found[payout_ids[r["payout_id"]]].append(
            ("transaction", r["tx_hash"], r["status"], r["create_time"])
        )
    endpoint_ids = ids["endpoints"]
    for r in await conn.fetch(
        """SELECT d.endpoint_id, d.id, d.event_type, d.resource_name, d.status, d.attempt_count,
                  d.update_time, a.status_code, a.error
             FROM webhook_deliveries d
             LEFT JOIN LATERAL (SELECT status_code, error FROM webhook_attempts
                                 WHERE delivery_id = d.id ORDER BY attempt DESC LIMIT 1) a ON true
            WHERE d.endpoint_id = ANY($1::text[])
              AND (d.status = 'failed' OR (d.status = 'pending' AND d.attempt_count > 0))
            ORDER BY d.event_sequence LIMIT 200""",
        list(endpoint_ids),
    ):
        last = f"HTTP {r['status_code']}" if r["status_code"] is not None else r["error"]
        found[endpoint_ids[r["endpoint_id"]]].append(
            (
                "delivery",
                str(r["id"]),
                f"{r['event_type']} of {r['resource_name']}: {r['status']} after "
                f"{r['attempt_count']} attempts, last {last or '-'}",
                r["update_time"],
            )
        )
    for s in subjects:
        row = candidates[s].row
        if s.startswith("exceptions/"):
            found[s].append(("reconciliation", row["evidence"], row["detail"], row["create_time"]))
    resources = [s for s in subjects if not s.startswith("exceptions/")]
    for r in await conn.fetch(
        """SELECT resource_name, id, type, create_time FROM (
               SELECT resource_name, id, type, create_time,
                      row_number() OVER (PARTITION BY resource_name ORDER BY sequence DESC) AS n
                 FROM events WHERE resource_name = ANY($1::text[])) e
            WHERE n <= 10 ORDER BY resource_name, create_time""",
        resources,
    ):
        found[r["resource_name"]].append(("event", str(r["id"]), r["type"], r["create_time"]))
    for item in items:
        item.evidence[:0] = found[item.subject]


async def counts(
    conn: asyncpg.Connection, settings: SupportSettings, now: datetime, page_rows: int = 500
) -> dict[decide.Kind, tuple[int, datetime]]:
    """Per kind, the items the queue shows now and the oldest one's `since`:
    the reads and the decider of `page`, walked page by page to the end,
    without the evidence (the metrics sampler, core/metrics.py)."""
    assert page_rows > 0
    found: dict[decide.Kind, tuple[int, datetime]] = {}
    sources = frozenset(_SOURCE_KINDS)
    after: tuple[datetime, str] | None = None
    while True:
        rows = await _rows(conn, sources, None, after, page_rows + 1, settings, now)
        candidates = sorted(_candidates(rows, settings, now), key=lambda c: (c.since, c.subject))
        more = len(candidates) > page_rows
        candidates = candidates[:page_rows]
        by_subject = await notes(conn, [c.subject for c in candidates])
        for c in candidates:
            left = as_notes(by_subject[c.subject])
            for f in decide.classify(c.facts):
                if decide.shown(f, left, now):
                    n, oldest = found.get(f.kind, (0, c.since))
                    found[f.kind] = (n + 1, min(oldest, c.since))
        if not more or not candidates:
            return found
        after = (candidates[-1].since, candidates[-1].subject)
