"""Moves invoices through the state machine inside the caller's transaction.

Every path that can change an invoice (a block, an undo, the clock, the
merchant, an operator) ends here: load the invoices locked, ask
`state.decide`, write the new state, flags and sums and one outbox
event per step, all in the caller's transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from core.events import snapshots
from core.events.outbox import NewEvent, append
from core.invoices import state as sm
from core.ledger import settlement
from core.payments import store as payments

if TYPE_CHECKING:
    from kassa.core.v1.invoice_pb2 import Invoice


async def lock_invoices(conn: asyncpg.Connection, ids: Iterable[str]) -> list[asyncpg.Record]:
    # A fixed lock order (by id) keeps concurrent writers free of deadlocks.
    return list(
        await conn.fetch(
            "SELECT * FROM invoices WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
            sorted(set(ids)),
        )
    )


def funds_of(row: asyncpg.Record, payments_now: Sequence[asyncpg.Record]) -> sm.Funds:
    """An invoice's funds from its payment rows as they now stand (`payments_of`)."""
    s = payments.sums(row, payments_now)
    return sm.Funds(
        pending=s.pending,
        confirming=s.confirming,
        confirmed=s.confirmed,
        late=s.late,
        wrong_asset_transfers=s.wrong_asset,
        outside=s.outside,
    )


async def payments_of(
    conn: asyncpg.Connection, ids: Sequence[str]
) -> dict[str, list[asyncpg.Record]]:
    return await payments.rows_of(conn, ids)


# Value -> member tables: calling an Enum (`State(value)`) costs a few
# microseconds, paid per invoice on a block's hot path.
_STATE_OF = {s.value: s for s in sm.State}
_FLAG_OF = {f.value: f for f in sm.Flag}


def as_domain(row: asyncpg.Record) -> sm.Invoice:
    mempool = row["amount_mempool"]
    return sm.Invoice(
        state=_STATE_OF[row["state"]],
        amount_due=row["amount_due"],
        expire_time=row["expire_time"],
        tolerance=row["underpayment_tolerance"],
        funds=sm.Funds(
            pending=mempool,
            confirming=row["amount_pending"] - mempool,
            confirmed=row["amount_received"],
            late=row["amount_late"],
            wrong_asset_transfers=row["wrong_asset_transfers"],
            outside=row["amount_outside"],
        ),
        flags=frozenset(_FLAG_OF[f] for f in row["flags"]),
        refunded=row["amount_refunded"],
    )


def refundable_of(row: asyncpg.Record) -> int:
    """Base units a refund of this invoice may still return (before refunds in
    progress): its confirmed funds not yet refunded, once no payment moves it —
    settled, underpaid, cancelled, refunded, marked, or expired with funds."""
    return sm.refundable(as_domain(row))


# One statement for all changed invoices (an executemany of 5,000 UPDATEs took
# 0.35-0.45 s of a block); RETURNING hands back the rows as they now stand, so
# no second read. Flags travel comma-joined: their values are identifiers.
_UPDATE = """
UPDATE invoices i
   SET state = u.state, flags = string_to_array(u.flags, ','), amount_received = u.received,
       amount_pending = u.pending, amount_mempool = u.mempool, amount_late = u.late,
       wrong_asset_transfers = u.wrong_asset, amount_refunded = u.refunded,
       amount_outside = u.outside, update_time = $10
  FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::numeric[],
              $7::numeric[], $8::integer[], $9::numeric[], $11::numeric[])
       AS u(id, state, flags, received, pending, mempool, late, wrong_asset, refunded, outside)
 WHERE i.id = u.id
RETURNING {returning}
"""
# The columns _UPDATE writes (what _as_written replaces in a row).
_WRITTEN = (
    "state",
    "flags",
    "amount_received",
    "amount_pending",
    "amount_mempool",
    "amount_late",
    "wrong_asset_transfers",
    "amount_refunded",
    "amount_outside",
    "update_time",
)
# A block's form: it renders its snapshots from the rows it locked (_as_written)
# and needs back only what the statement wrote, to check them against. The whole
# row (~30 columns, its metadata and eight numerics decoded per invoice) came
# back and was compared for 5,000 invoices per block before.
_UPDATE_WRITTEN = _UPDATE.format(returning=", ".join(["i.id", *(f"i.{c}" for c in _WRITTEN)]))
_UPDATE_ROWS = _UPDATE.format(returning="i.*")


def _as_written(row: asyncpg.Record, invoice: sm.Invoice, now: datetime) -> dict[str, Any]:
    """The row as _UPDATE leaves it, column for column (what its RETURNING gives)."""
    image = dict(row.items())  # twice as fast as dict(row) on a Record
    image.update(  # the columns of _WRITTEN
        state=invoice.state.value,
        flags=sorted(f.value for f in invoice.flags),
        amount_received=invoice.funds.confirmed,
        amount_pending=invoice.funds.confirming + invoice.funds.pending,
        amount_mempool=invoice.funds.pending,
        amount_late=invoice.funds.late,
        wrong_asset_transfers=invoice.funds.wrong_asset_transfers,
        amount_refunded=invoice.refunded,
        amount_outside=invoice.funds.outside,
        update_time=now,
    )
    return image


# Invoices rendered between two turns of the event loop while the UPDATE runs
# (~5 ms of rendering).
_RENDER_SLICE = 128


def _announced(
    invoice_id: str, decision: sm.Decision, extra_events: Mapping[str, list[str]]
) -> list[tuple[str, sm.State]]:
    """The events of one decision, in order: extra types asked for (unless a
    step announces the same type), then one per step."""
    announced: list[tuple[str, sm.State]] = [(s.event_type, s.state) for s in decision.steps]
    for extra in extra_events.get(invoice_id, []):
        if extra not in {t for t, _ in announced}:
            announced.insert(0, (extra, decision.invoice.state))
    return announced


@dataclass(frozen=True)
class Decided:
    """Invoices decided ahead of `apply` (`decide_yielding`): the events, the
    invoices before them, and the decider's answers, all by invoice id."""

    events: dict[str, sm.Event]
    before: dict[str, sm.Invoice]
    decisions: dict[str, sm.Decision]


async def as_domain_yielding(rows: Iterable[asyncpg.Record]) -> dict[str, sm.Invoice]:
    """`as_domain` of every row by id, giving the event loop a turn every
    _RENDER_SLICE rows: the caller runs statements on its connection meanwhile
    (the block applier's payments INSERT), which need the loop to send their
    next statement as the previous one ends."""
    domains: dict[str, sm.Invoice] = {}
    for n, row in enumerate(rows, 1):
        domains[row["id"]] = as_domain(row)
        if n % _RENDER_SLICE == 0:
            await asyncio.sleep(0)
    return domains


async def decide_yielding(
    rows: Sequence[asyncpg.Record],
    event_of: Callable[[asyncpg.Record], sm.Event],
    domains: Mapping[str, sm.Invoice] | None = None,
) -> Decided:
    """`state.decide` for every row, with its event `event_of(row)`, giving the
    event loop a turn every _RENDER_SLICE invoices (as `as_domain_yielding`:
    the block applier's ledger postings run meanwhile). `domains`: `as_domain`
    of some of these same rows, made earlier (`as_domain_yielding`)."""
    events: dict[str, sm.Event] = {}
    before: dict[str, sm.Invoice] = {}
    decisions: dict[str, sm.Decision] = {}
    known = domains or {}
    for n, row in enumerate(rows, 1):
        invoice_id = row["id"]
        event = events[invoice_id] = event_of(row)
        invoice = known.get(invoice_id)
        if invoice is None:
            invoice = as_domain(row)
        before[invoice_id] = invoice
        decisions[invoice_id] = sm.decide(invoice, event)
        if n % _RENDER_SLICE == 0:
            await asyncio.sleep(0)
    return Decided(events, before, decisions)


@dataclass(frozen=True)
class Applied:
    decisions: dict[str, sm.Decision]
    events: list[NewEvent]
    # The changed invoices as the UPDATE left them: whole rows, or only the id
    # and the columns it wrote when the caller gave `payments_now` (a block).
    rows: dict[str, asyncpg.Record]


async def apply(
    conn: asyncpg.Connection,
    rows: Sequence[asyncpg.Record],
    events: dict[str, sm.Event],
    now: datetime,
    head_height: int | None = None,
    extra_events: dict[str, list[str]] | None = None,
    payments_now: Mapping[str, Sequence[asyncpg.Record]] | None = None,
    decided: Decided | None = None,
) -> Applied:
    """Decides and saves each invoice's event and writes the outbox events.

    Refused decisions change nothing; the caller reads them from the result.
    `extra_events` names further event types to announce for an invoice even
    when its state does not move (e.g. payment.reorged of an uncounted part).
    `payments_now`: the invoices' payment rows as they now stand, when the
    caller has read them already (the block applier decides from them);
    otherwise they are read here for the event snapshots.
    `decided`: the rows already decided on `events` (`decide_yielding`).
    """
    extra_events = extra_events or {}
    if decided is None:
        before = {row["id"]: as_domain(row) for row in rows}
        decisions = {row["id"]: sm.decide(before[row["id"]], events[row["id"]]) for row in rows}
    else:
        assert decided.events is events or decided.events == events, "decided on other events"
        assert decided.decisions.keys() == {row["id"] for row in rows}, "decided other invoices"
        before, decisions = decided.before, decided.decisions
    changed = [
        (row, decisions[row["id"]])
        for row in rows
        if decisions[row["id"]].refusal is None
        and (
            decisions[row["id"]].changed
            or decisions[row["id"]].invoice != before[row["id"]]
            or extra_events.get(row["id"])
        )
    ]
    if not changed:
        return Applied(decisions, [], {})
    ids = [row["id"] for row, _ in changed]
    after = [d.invoice for _, d in changed]
    update = asyncio.ensure_future(
        conn.fetch(
            _UPDATE_ROWS if payments_now is None else _UPDATE_WRITTEN,
            ids,
            [a.state.value for a in after],
            [",".join(sorted(f.value for f in a.flags)) for a in after],
            [a.funds.confirmed for a in after],
            [a.funds.confirming + a.funds.pending for a in after],
            [a.funds.pending for a in after],
            [a.funds.late for a in after],
            [a.funds.wrong_asset_transfers for a in after],
            [a.refunded for a in after],
            now,
            [a.funds.outside for a in after],
        )
    )
    rendered: dict[str, Invoice] = {}
    written: dict[str, dict[str, Any]] = {}
    events_of: dict[str, list[NewEvent]] = {}
    try:
        if payments_now is not None:
            # The UPDATE is on its way (one turn of the loop sends it): the
            # snapshots are rendered from the rows as it will leave them while
            # the database writes them (a 5,000-invoice block: ~0.2 s of
            # rendering beside ~0.3 s of writing), then checked below.
            # Rendering gives the loop a turn every _RENDER_SLICE invoices, so
            # asyncpg drains the RETURNING rows as the server sends them: held in
            # the socket, they would stall the server's UPDATE until rendering
            # ended, and the two would run one after the other.
            # Their events are serialised here too; only a funds-owed event,
            # known after settlement below, is added later.
            await asyncio.sleep(0)
            for n, (row, decision) in enumerate(changed, 1):
                image = written[row["id"]] = _as_written(row, decision.invoice, now)
                snapshot = rendered[row["id"]] = snapshots.invoice_snapshot(
                    image, payments_now[row["id"]], head_height
                )
                events_of[row["id"]] = snapshots.snapshot_events(
                    snapshot, row, _announced(row["id"], decision, extra_events)
                )
                if n % _RENDER_SLICE == 0:
                    await asyncio.sleep(0)
        fresh = {r["id"]: r for r in await update}
    finally:
        if not update.done():
            update.cancel()
    # Every changed invoice was written, and no other: the update is by the locked ids.
    assert fresh.keys() == set(ids), (sorted(fresh), ids)
    # And as rendered: the snapshots show what the database holds — the columns
    # the UPDATE wrote as it stored them; the others are the locked rows' own.
    assert written.keys() == (fresh.keys() if payments_now is not None else set()), ids
    assert all(all(fresh[i][c] == image[c] for c in _WRITTEN) for i, image in written.items()), ids
    owed = await settlement.reconcile(
        conn, [(row, before[row["id"]], d.invoice) for row, d in changed], now
    )
    # A reorg took back funds already refunded or paid out: the merchant owes them.
    newly_owed = {o.invoice["id"] for o in owed if o.after > o.before}
    if payments_now is None:
        rows_now = await payments_of(conn, ids)
        rendered = {i: snapshots.invoice_snapshot(fresh[i], rows_now[i], head_height) for i in ids}
        events_of = {
            row["id"]: snapshots.snapshot_events(
                rendered[row["id"]], row, _announced(row["id"], decision, extra_events)
            )
            for row, decision in changed
        }
    outbox: list[NewEvent] = []
    for row, decision in changed:
        outbox.extend(events_of[row["id"]])
        if row["id"] in newly_owed:
            owes = [(sm.FUNDS_OWED, decision.invoice.state)]
            outbox.extend(snapshots.snapshot_events(rendered[row["id"]], row, owes))
    await append(conn, outbox)
    return Applied(decisions, outbox, fresh)


def snapshot_event(
    event_type: str, row: asyncpg.Record, payments: Sequence[asyncpg.Record] = ()
) -> NewEvent:
    return snapshots.invoice_event(event_type, row, payments)
