"""Settling invoices in the ledger: confirmed payments leave the merchant's
incoming account once the invoice is settled — up to the amount due into
available, any excess into refunds_payable (what a refund will debit).

Settlement reconciles to a target rather than booking events: the target is
a pure function of the invoice as it now stands, the amounts already settled
are read back from the ledger (transfers settle:{invoice}:{n}), and only the
difference is posted. A reorg that un-settles an invoice therefore posts the
reversing difference, and replays post nothing.

Every unit accounted for (issue 19): a reorg may take back funds the merchant
already received — refunded to the customer or paid out. The reversal then
takes from available / refunds_payable only what this invoice left there, and
books the shortfall to the merchant's receivable (debit receivable, credit
incoming), so no never-negative account goes negative and the chain follower
keeps running; the invoice is announced (invoice.funds_owed) and an exception
entry shows the amount owed. Likewise the invoice's share of incoming is kept
covering the payments this transaction reverses (a refund drawn on incoming,
or settled funds of a refunded invoice). Re-inclusion pays the receivable back
first. `plan` decides all of it, without I/O; `reconcile` is its one writer.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from core import names
from core.invoices import state as sm
from core.ledger import accounts as chart
from core.ledger import payments, store
from core.ledger.rules import Transfer

SETTLEMENT = 3  # transfer code (payments use 1 and 2)
_SETTLED = frozenset({sm.State.PAID, sm.State.OVERPAID})
# The merchant or a refund has the last word on these: settlement stays as it was.
_FROZEN = frozenset({sm.State.REFUNDED, sm.State.CANCELLED, sm.State.UNDERPAID})
# Where settlement moves an invoice's funds out of incoming.
KINDS = ("available", "refunds_payable")
# The exception entry of an invoice whose merchant owes reversed funds.
OWED_EXCEPTION = "reversed_funds_owed"


@dataclass(frozen=True)
class Target:
    available: int
    excess: int


def target(invoice: sm.Invoice) -> Target | None:
    """What should have left incoming for this invoice; None: leave it as it is."""
    if invoice.state in _FROZEN:
        return None
    if invoice.state in _SETTLED:
        available = min(invoice.funds.confirmed, invoice.amount_due)
        return Target(available, invoice.funds.confirmed - available)
    return Target(0, 0)


@dataclass(frozen=True)
class Settled:
    """What an invoice has settled so far, per kind, receivable legs included.

    `available` and `excess` count toward the target whether the funds are in
    the account or were booked to the receivable; `owed_*` is the part of each
    still outstanding on the receivable (owed_incoming: to keep the invoice's
    share of incoming covering its payments' reversals).
    """

    available: int = 0
    excess: int = 0
    transfers: int = 0
    owed_available: int = 0
    owed_excess: int = 0
    owed_incoming: int = 0

    @property
    def owed(self) -> int:
        return self.owed_available + self.owed_excess + self.owed_incoming


@dataclass(frozen=True)
class Leg:
    """One settlement transfer between two of the merchant's accounts (by kind).

    A leg to or from the receivable names the part of the settlement it stands
    for (`books`: available, refunds_payable or incoming)."""

    debit: str
    credit: str
    amount: int
    books: str = ""

    def __post_init__(self) -> None:
        assert self.amount > 0 and self.debit != self.credit, self
        assert (self.books != "") == ("receivable" in (self.debit, self.credit)), self


@dataclass(frozen=True)
class Position:
    """What `plan` needs besides the target and what was settled.

    confirmed: the invoice's confirmed funds once this transaction's payment
    postings are in (the posted credits its payments leave in incoming);
    drawn: its refunds' holds by source kind, live ones (not failed nor
    cancelled) — funds of this invoice that left the account they were in;
    free: the merchant's spendable balance of each kind now (other invoices'
    and payouts' funds included), what a reversal can at most take.
    """

    confirmed: int
    drawn: Mapping[str, int] = field(default_factory=dict)
    free: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    legs: tuple[Leg, ...]
    settled: Settled  # as it stands once the legs are posted (transfers not counted)

    @property
    def booked_owed(self) -> int:
        """Newly owed on the receivable by these legs."""
        return sum(g.amount for g in self.legs if g.debit == "receivable")


def plan(goal: Target | None, have: Settled, pos: Position) -> Plan:
    """The legs that take an invoice's settlement from `have` to `goal` (None:
    keep it) without any of the merchant's accounts going against its nature.

    Forward (more settled): what is owed on the receivable for that part is
    paid back first, the rest moves incoming -> kind. Backward (un-settled by a
    reorg): kind -> incoming for what this invoice still has there (what it put
    there, less its refunds drawn on it, within the merchant's free balance);
    the shortfall, refunded or paid out already, is booked receivable -> incoming.
    Then the invoice's share of incoming (its confirmed funds less what left it)
    must not be negative: a shortfall there is booked to the receivable too, and
    a surplus pays back what was owed for it.
    """
    settled = {"available": have.available, "refunds_payable": have.excess}
    owed = {
        "available": have.owed_available,
        "refunds_payable": have.owed_excess,
        "incoming": have.owed_incoming,
    }
    want = (
        dict(settled)
        if goal is None
        else {
            "available": goal.available,
            "refunds_payable": goal.excess,
        }
    )
    legs: list[Leg] = []
    for kind in KINDS:
        delta = want[kind] - settled[kind]
        if delta > 0:
            repay = min(delta, owed[kind])
            if repay:
                legs.append(Leg("incoming", "receivable", repay, kind))
                owed[kind] -= repay
            if delta - repay:
                legs.append(Leg("incoming", kind, delta - repay))
        elif delta < 0:
            left_here = settled[kind] - owed[kind] - pos.drawn.get(kind, 0)
            take = max(0, min(-delta, left_here, pos.free.get(kind, 0)))
            if take:
                legs.append(Leg(kind, "incoming", take))
            if -delta - take:
                legs.append(Leg("receivable", "incoming", -delta - take, kind))
                owed[kind] += -delta - take
        settled[kind] = want[kind]
    share = (
        pos.confirmed
        - settled["available"]
        - settled["refunds_payable"]
        - pos.drawn.get("incoming", 0)
        + owed["incoming"]
    )
    if share < 0:
        legs.append(Leg("receivable", "incoming", -share, "incoming"))
        owed["incoming"] += -share
    elif share > 0 and owed["incoming"] > 0:
        repay = min(share, owed["incoming"])
        legs.append(Leg("incoming", "receivable", repay, "incoming"))
        owed["incoming"] -= repay
    after = Settled(
        settled["available"],
        settled["refunds_payable"],
        have.transfers,
        owed["available"],
        owed["refunds_payable"],
        owed["incoming"],
    )
    # Never owed less than nothing; the target reached; incoming covered.
    assert min(owed.values()) >= 0, (goal, have, pos, legs)
    assert goal is None or (after.available, after.excess) == (goal.available, goal.excess)
    assert (
        pos.confirmed
        - after.available
        - after.excess
        - pos.drawn.get("incoming", 0)
        + after.owed_incoming
        >= 0
    ), (goal, have, pos, legs)
    return Plan(tuple(order(legs)), after)


def _rank(leg: Leg) -> int:
    """Posting order that keeps every flagged account within its flag at every
    transfer: what refills incoming first, then paying back the receivable
    (owed before it is repaid), then what leaves incoming."""
    if leg.credit == "incoming":
        return 0
    if leg.credit == "receivable":
        return 1
    return 2


def order(legs: Sequence[Leg]) -> list[Leg]:
    return sorted(legs, key=_rank)


async def settled(
    conn: asyncpg.Connection, invoices: Sequence[asyncpg.Record]
) -> dict[str, Settled]:
    """What each invoice has settled so far, read back from its settle:{invoice}:{n} transfers."""
    ids = [r["id"] for r in invoices]
    # The ids of one invoice sort together; ';' is the character after ':'.
    rows = await conn.fetch(
        """SELECT r.invoice_id, t.debit_account_id, t.credit_account_id, t.amount, t.user_data
             FROM unnest($1::text[], $2::text[], $3::text[]) AS r(invoice_id, lo, hi)
             JOIN ledger_transfers t ON t.id >= r.lo AND t.id < r.hi""",
        ids,
        [f"settle:{i}:" for i in ids],
        [f"settle:{i};" for i in ids],
    )
    incoming = {
        r["id"]: chart.merchant_account(r["merchant_id"], r["asset"], "incoming") for r in invoices
    }
    # invoice -> [available, excess, transfers, owed available, owed excess, owed incoming]
    sums: dict[str, list[int]] = {i: [0, 0, 0, 0, 0, 0] for i in ids}
    for r in rows:
        sign = 1 if r["debit_account_id"] == incoming[r["invoice_id"]] else -1
        other = r["credit_account_id"] if sign == 1 else r["debit_account_id"]
        entry = sums[r["invoice_id"]]
        entry[2] += 1
        amount = int(r["amount"])
        if other.endswith(":receivable"):
            # Booked for a part of the settlement (user_data): counts toward it,
            # and is owed (or paid back) on the receivable.
            books = r["user_data"]
            if books != "incoming":
                entry[0 if books == "available" else 1] += sign * amount
            entry[{"available": 3, "refunds_payable": 4, "incoming": 5}[books]] -= sign * amount
        else:
            entry[0 if other.endswith(":available") else 1] += sign * amount
    return {i: Settled(*v) for i, v in sums.items()}


def _transfer(invoice: asyncpg.Record, n: int, leg: Leg) -> Transfer:
    merchant, asset = invoice["merchant_id"], invoice["asset"]
    return Transfer(
        id=f"settle:{invoice['id']}:{n:06d}",
        debit_account_id=chart.merchant_account(merchant, asset, leg.debit),
        credit_account_id=chart.merchant_account(merchant, asset, leg.credit),
        amount=leg.amount,
        asset=asset,
        code=SETTLEMENT,
        reference=names.invoice(merchant, invoice["id"]),
        user_data=leg.books,
    )


def _needs_look(before: sm.Invoice, after: sm.Invoice) -> bool:
    """Whether settlement may have to move: skips a read for the many invoices
    a block only detects funds on (nothing was ever settled nor owed)."""
    goal = target(after)
    if goal is not None and (goal != Target(0, 0) or before.state in _SETTLED):
        return True
    # Confirmed funds left (a reorg) or came back (what was owed may be repaid).
    return after.funds.confirmed != before.funds.confirmed


async def _drawn(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per invoice, its live refunds' holds by source kind."""
    out: dict[str, dict[str, int]] = {i: {} for i in ids}
    for r in await conn.fetch(
        """SELECT invoice_id, hold_sources, hold_amounts FROM payouts
            WHERE invoice_id = ANY($1::text[]) AND kind = 'refund'
              AND NOT state = ANY('{failed,cancelled}'::text[])""",
        list(ids),
    ):
        drawn = out[r["invoice_id"]]
        for source, amount in zip(r["hold_sources"], r["hold_amounts"], strict=True):
            drawn[source] = drawn.get(source, 0) + int(amount)
    return out


async def _free(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, int]:
    """Spendable balances, the accounts locked (id order, as payouts lock them) until commit."""
    rows = await conn.fetch(
        """SELECT id, credits_posted - debits_posted - debits_pending AS free
             FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE""",
        sorted(set(account_ids)),
    )
    return {r["id"]: int(r["free"]) for r in rows}


@dataclass(frozen=True)
class Owed:
    """An invoice whose receivable balance changed: owed before and now."""

    invoice: asyncpg.Record
    before: int
    after: int


async def reconcile(
    conn: asyncpg.Connection,
    changed: Sequence[tuple[asyncpg.Record, sm.Invoice, sm.Invoice]],
    now: datetime,
) -> list[Owed]:
    """Posts what each changed invoice's settlement lacks, in the caller's transaction;
    returns the invoices whose amount owed on the receivable changed.

    `changed` holds (row, invoice before, invoice after). The caller holds each
    invoice's row lock, so numbering settle transfers by count is race-free.
    Posted before the payments' reversals of the same transaction (core/chain/apply.py).
    """
    look = [(row, after) for row, before, after in changed if _needs_look(before, after)]
    if not look:
        return []
    rows = [row for row, _ in look]
    pairs = sorted({(row["merchant_id"], row["asset"]) for row in rows})
    # One statement creates whatever accounts are missing, in id order.
    accounts = {a.id: a for m, asset in pairs for a in chart.merchant_accounts(m, asset)}
    await store.ensure_accounts(conn, [accounts[i] for i in sorted(accounts)])
    done = await settled(conn, rows)
    drawn = await _drawn(conn, [row["id"] for row in rows])
    # Every merchant account a leg may touch, locked in id order (as the store
    # and the payout service lock them), not just the two read.
    free = await _free(conn, [a for a in accounts if not a.endswith(":payouts_in_flight")])
    batch: list[tuple[int, Transfer]] = []
    owed: list[Owed] = []
    for row, after in look:
        have = done[row["id"]]
        merchant, asset = row["merchant_id"], row["asset"]
        ids = {kind: chart.merchant_account(merchant, asset, kind) for kind in KINDS}
        decided = plan(
            target(after),
            have,
            Position(
                after.funds.confirmed,
                drawn[row["id"]],
                {kind: free.get(ids[kind], 0) for kind in KINDS},
            ),
        )
        for n, leg in enumerate(decided.legs, start=have.transfers + 1):
            # What later invoices of the merchant may still take from its accounts.
            if leg.debit in ids:
                free[ids[leg.debit]] = free.get(ids[leg.debit], 0) - leg.amount
            if leg.credit in ids:
                free[ids[leg.credit]] = free.get(ids[leg.credit], 0) + leg.amount
            batch.append((_rank(leg), _transfer(row, n, leg)))
        if decided.settled.owed != have.owed:
            owed.append(Owed(row, have.owed, decided.settled.owed))
    if batch:
        # Across invoices too: every refill of incoming before anything leaves it.
        batch.sort(key=lambda x: x[0])
        await payments.post_or_raise(conn, [t for _, t in batch], now)
    if owed:
        await _exceptions(conn, owed, now)
    return owed


async def _exceptions(conn: asyncpg.Connection, owed: Sequence[Owed], now: datetime) -> None:
    """Keeps one open exception entry per invoice whose merchant owes reversed
    funds, with the amount outstanding; closed (acknowledged by Kassa) once repaid."""
    for o in owed:
        name = names.invoice(o.invoice["merchant_id"], o.invoice["id"])
        key = f"{OWED_EXCEPTION}:{o.invoice['id']}"
        if o.after > 0:
            await conn.execute(
                """INSERT INTO exceptions (id, kind, dedup_key, resource, evidence, detail, amount,
                                           create_time, update_time, chain, asset)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)
                   ON CONFLICT (dedup_key) WHERE state = 'open' DO UPDATE
                      SET detail = EXCLUDED.detail, amount = EXCLUDED.amount,
                          update_time = EXCLUDED.update_time""",
                secrets.token_hex(10),
                OWED_EXCEPTION,
                key,
                name,
                chart.receivable(o.invoice["merchant_id"], o.invoice["asset"]),
                f"a reorg took back {o.after} base units of {name} that were already "
                "refunded or paid out: the merchant owes them (booked to its receivable)",
                o.after,
                now,
                o.invoice["chain"],
                o.invoice["asset"],
            )
        else:
            await conn.execute(
                """UPDATE exceptions
                      SET state = 'resolved', amount = 0, resolve_action = 'acknowledge',
                          resolve_actor = 'kassa', resolve_time = $2, update_time = $2,
                          resolve_reason = 'paid back: the reversed funds were included again'
                    WHERE dedup_key = $1 AND state = 'open'""",
                key,
                now,
            )
