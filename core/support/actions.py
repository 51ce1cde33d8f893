"""Support actions: the one writer of support_actions (the audit trail).

An action is decided against its subject as it stands now (decide.offered):
one the queue does not offer for it is refused. Its effect goes through the
owner of what it changes — an invoice mark (core/invoices), a refund
(core/payouts), a reconciliation exception's resolution — under a request id
derived from the action's, so a retry after a crash between the effect and
its audit record repeats the effect's first answer instead of acting twice;
then the record is written. A dangerous action under
`[support] require_second_approval` is only recorded as pending until a
different operator approves it; the approval performs it. A pending action
can instead be declined (withdrawn by its requester, rejected by another
operator); it is then never performed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import assert_never

import asyncpg

from core import idempotency, names, reasons
from core.errors import Code, Refusal, not_found, precondition
from core.invoices import state as invoice_state
from core.invoices.invoicing import Invoicing
from core.payouts.payouts import Payouts, PayoutSpec
from core.reconcile import exceptions
from core.support import decide, queue
from core.support.settings import SupportSettings


def name(action_id: str) -> str:
    return f"supportActions/{action_id}"


@dataclass(frozen=True)
class Request:
    action: decide.Action
    kind: decide.Kind
    subject: str
    reason: str
    actor: str
    request_id: str | None
    request_hash: bytes
    destination: str = ""
    tx_hash: str = ""

    def __post_init__(self) -> None:
        assert self.reason.strip(), "an action needs a reason"
        assert len(self.request_hash) == 32


@dataclass(frozen=True)
class Outcome:
    result: str
    amount: int | None = None
    until: datetime | None = None
    # Notes: the facts they were taken on (an acknowledgement holds while they do).
    fingerprint: str = ""


def _hash(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


class SupportActions:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: SupportSettings,
        invoicing: Invoicing,
        payouts: Payouts | None,
        webhook_give_up_after_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.invoicing = invoicing
        self.payouts = payouts
        self.give_up_after_s = webhook_give_up_after_s
        self.clock = clock

    async def queue_page(
        self,
        kinds: frozenset[decide.Kind],
        after: tuple[datetime, str] | None,
        limit: int,
        now: datetime,
    ) -> tuple[list[queue.Item], tuple[datetime, str] | None]:
        """A page of the support queue (core/support/queue.py) under these settings,
        so that SupportService (core/api) holds no pool."""
        async with self.pool.acquire() as conn:
            return await queue.page(conn, kinds, after, limit, self.settings, now)

    async def take(self, req: Request) -> asyncpg.Record:
        """Performs (or, when it needs a second operator, records as pending) the action."""
        now = self.clock()
        if req.request_id is not None:
            async with self.pool.acquire() as conn:
                earlier = await conn.fetchrow(
                    "SELECT * FROM support_actions WHERE request_id = $1", req.request_id
                )
            if earlier is not None:
                idempotency.check(
                    earlier["request_hash"], req.request_hash, req.request_id, name(earlier["id"])
                )
                return earlier
        action_id = secrets.token_hex(10)
        # The effect's own request id: the same on a retry of this request.
        effect_id = f"support:r:{req.request_id}" if req.request_id else f"support:a:{action_id}"
        pending = req.action in decide.DANGEROUS and self.settings.require_second_approval
        done = None if pending else await self._performed(req, effect_id)
        if done is None:
            facts, row, finding = await self._offered(req, now)
            if pending:
                return await self._record(action_id, req, "pending_approval", Outcome(""), now)
            done = await self._perform(req, facts, row, effect_id, req.actor, now)
            if req.action in decide.NOTES:
                done = replace(done, fingerprint=finding.fingerprint)
        return await self._record(action_id, req, "done", done, now)

    async def approve(self, action_id: str, approver: str) -> asyncpg.Record:
        """A second operator's approval of a pending action performs it.

        The action's row stays locked from the check to the record, so an
        approval and a decline (or two approvals) of one action are decided
        one after the other: one that is declined is never performed."""
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await _locked(conn, action_id)
            if row["state"] == "done":
                return row  # approved already: a retry answers the same
            if row["state"] != "pending_approval":
                raise _not_pending(row)
            if row["actor"] == approver:
                raise Refusal(
                    Code.PERMISSION_DENIED,
                    reasons.SUPPORT_APPROVER_IS_REQUESTER,
                    f"{name(action_id)} was asked for by {approver}: "
                    "another operator must approve it",
                    metadata={"name": name(action_id), "actor": approver},
                )
            req = _request_of(row, action_id)
            effect_id = f"support:a:{action_id}"
            # The effect goes through its owner on other connections; this row's
            # lock only orders the decisions about this action.
            done = await self._performed(req, effect_id)
            if done is None:
                facts, subject_row, _ = await self._offered(req, now)
                done = await self._perform(
                    req, facts, subject_row, effect_id, f"{req.actor} approved by {approver}", now
                )
            updated = await conn.fetchrow(
                """UPDATE support_actions
                      SET state = 'done', approver = $2, approve_time = $3, result = $4,
                          amount = $5
                    WHERE id = $1 AND state = 'pending_approval' RETURNING *""",
                action_id,
                approver,
                now,
                done.result,
                done.amount,
            )
        assert updated is not None and updated["state"] == "done", updated
        return updated

    async def decline(
        self,
        action_id: str,
        decider: str,
        reason: str,
        authorize_reject: Callable[[], None],
    ) -> asyncpg.Record:
        """Declines a pending action: withdrawn by the operator who asked for it,
        or rejected by another, who must pass `authorize_reject` (the edge's
        scope check). It is never performed afterwards."""
        assert reason.strip(), "a decline needs a reason"
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await _locked(conn, action_id)
            state = "withdrawn" if row["actor"] == decider else "rejected"
            if state == "rejected":
                authorize_reject()
            if (row["state"], row["decider"], row["decide_reason"]) == (state, decider, reason):
                return row  # a retry of this decline answers the same
            if row["state"] != "pending_approval":
                raise _not_pending(row)
            # An approval that made its effect and crashed before its record:
            # the action was performed, so it can no longer be declined.
            if await self._performed(_request_of(row, action_id), f"support:a:{action_id}"):
                raise precondition(
                    reasons.SUPPORT_ACTION_NOT_PENDING,
                    f"{name(action_id)} was already performed by an approval that was not "
                    "recorded: approve it again to record it",
                    name=name(action_id),
                    state="performed",
                )
            updated = await conn.fetchrow(
                """UPDATE support_actions
                      SET state = $2, decider = $3, decide_reason = $4, decide_time = $5
                    WHERE id = $1 AND state = 'pending_approval' RETURNING *""",
                action_id,
                state,
                decider,
                reason,
                now,
            )
        assert updated is not None and updated["state"] == state, updated
        return updated

    async def _offered(
        self, req: Request, now: datetime
    ) -> tuple[decide.Facts, asyncpg.Record, decide.Finding]:
        async with self.pool.acquire() as conn:
            found = await queue.of_subject(conn, req.subject, self.settings, now)
        offers = [] if found is None else decide.classify(found[0])
        finding = None if found is None else decide.offered(found[0], req.kind, req.action)
        if found is None or finding is None:
            here = "; ".join(f"{f.kind}: {', '.join(f.actions)}" for f in offers) or "nothing"
            raise precondition(
                reasons.SUPPORT_ACTION_NOT_APPLICABLE,
                f"{req.action} is not a safe action for {req.subject} as {req.kind} now "
                f"(it offers {here})",
                subject=req.subject,
                kind=req.kind.value,
                action=req.action.value,
            )
        return found[0], found[1], finding

    async def _performed(self, req: Request, effect_id: str) -> Outcome | None:
        """The outcome of an effect already made under `effect_id` (a retry
        after a crash before the audit record), else None."""
        if req.action in _RESOLUTIONS and req.kind is decide.Kind.RECONCILIATION_MISMATCH:
            async with self.pool.acquire() as conn:
                resolved = await conn.fetchval(
                    "SELECT resolve_action FROM exceptions WHERE resolve_request_id = $1",
                    effect_id,
                )
            if resolved is None:
                return None
            assert resolved == _RESOLUTIONS[req.action].value, (resolved, req)
            return Outcome(f"{req.subject} resolved as {resolved}d")
        parsed = names.parse_invoice(req.subject)
        if parsed is None:
            return None
        merchant_id, _ = parsed
        async with self.pool.acquire() as conn:
            match req.action:
                case decide.Action.REFUND_EXCESS | decide.Action.REFUND_WHOLE:
                    row = await conn.fetchrow(
                        "SELECT id, amount FROM payouts WHERE merchant_id = $1 AND request_id = $2",
                        merchant_id,
                        effect_id,
                    )
                    if row is not None:
                        return Outcome(names.payout(merchant_id, row["id"]), int(row["amount"]))
                case decide.Action.ACCEPT_AS_PAID:
                    key = idempotency.Key("invoices.mark", merchant_id, effect_id, b"\x00" * 32)
                    if await idempotency.recall(conn, key) is not None:
                        return Outcome(req.subject)
                case _:
                    pass  # notes and the rest are decided afresh
        return None

    async def _perform(
        self,
        req: Request,
        facts: decide.Facts,
        row: asyncpg.Record,
        effect_id: str,
        actor: str,
        now: datetime,
    ) -> Outcome:
        match req.action:
            case decide.Action.ACCEPT_AS_PAID:
                assert isinstance(facts, decide.InvoiceFacts)
                merchant_id, invoice_id = _invoice(req.subject)
                await self.invoicing.mark(
                    merchant_id,
                    invoice_id,
                    req.subject,
                    invoice_state.State.PAID,
                    req.reason,
                    actor,
                    effect_id,
                    _hash("accept_as_paid", req.subject),
                )
                return Outcome(req.subject, max(facts.amount_due - facts.received, 0))
            case decide.Action.REFUND_EXCESS | decide.Action.REFUND_WHOLE:
                assert isinstance(facts, decide.InvoiceFacts)
                if self.payouts is None:
                    raise precondition(
                        reasons.SUPPORT_ACTION_NOT_APPLICABLE,
                        "refunds need payouts, which are off in this core (no [signer])",
                        subject=req.subject,
                    )
                merchant_id, invoice_id = _invoice(req.subject)
                whole = req.action is decide.Action.REFUND_WHOLE
                amount = facts.held if whole else facts.excess
                payout = await self.payouts.create(
                    PayoutSpec(
                        merchant_id=merchant_id,
                        kind="refund",
                        chain=facts.chain,
                        asset=facts.asset,
                        destination=req.destination.lower(),
                        amount=amount,
                        reference=f"support: {req.kind}",
                        request_id=effect_id,
                        invoice_id=invoice_id,
                    ),
                    now,
                )
                return Outcome(names.payout(merchant_id, payout["id"]), int(payout["amount"]))
            case decide.Action.REQUEST_TOP_UP:
                assert isinstance(facts, decide.InvoiceFacts)
                async with self.pool.acquire() as conn:
                    until = await conn.fetchval(
                        "SELECT monitoring_end_time FROM invoices WHERE id = $1", row["id"]
                    )
                return Outcome(
                    f"top-up of {facts.amount_due - facts.received} awaited until {until}",
                    facts.amount_due - facts.received,
                    until,
                )
            case decide.Action.MARK_FOR_REVIEW:
                return Outcome(f"under review by {req.actor}")
            case decide.Action.ATTACH_TRANSACTION:
                return Outcome(f"{req.tx_hash} attached")
            case decide.Action.REDELIVER_WEBHOOKS:
                give_up = now + timedelta(seconds=self.give_up_after_s)
                async with self.pool.acquire() as conn:
                    queued = await conn.fetchval(
                        """WITH q AS (
                             UPDATE webhook_deliveries
                                SET status = 'pending', next_attempt_time = $2,
                                    give_up_time = $3, update_time = $2
                              WHERE endpoint_id = $1
                                AND (status = 'failed'
                                     OR (status = 'pending' AND attempt_count >= $4))
                             RETURNING 1)
                           SELECT count(*) FROM q""",
                        row["endpoint_id"],
                        now,
                        give_up,
                        self.settings.webhook_failing_attempts,
                    )
                return Outcome(f"{queued} deliveries queued again")
            case decide.Action.ACKNOWLEDGE:
                if req.kind is decide.Kind.RECONCILIATION_MISMATCH:
                    return await self._resolve(req, row["id"], actor, effect_id, now)
                return Outcome("acknowledged")
            case decide.Action.REBASELINE:
                assert req.kind is decide.Kind.RECONCILIATION_MISMATCH, req
                outcome = await self._resolve(req, row["id"], actor, effect_id, now)
                return replace(outcome, amount=int(row["amount"]))
            case _:
                assert_never(req.action)

    async def _resolve(
        self, req: Request, exception_id: str, actor: str, effect_id: str, now: datetime
    ) -> Outcome:
        """Resolves the exception entry through its one writer
        (core/reconcile/exceptions.py), under the effect's request id."""
        action = _RESOLUTIONS[req.action]
        resolution = exceptions.Resolution(exception_id, action, req.reason, actor, effect_id)
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await exceptions.resolve(conn, resolution, now)
            except exceptions.ResolveRefused as refused:
                raise precondition(
                    reasons.SUPPORT_ACTION_NOT_APPLICABLE, refused.message, subject=req.subject
                ) from None
        return Outcome(f"{req.subject} resolved as {action.value}d")

    async def _record(
        self, action_id: str, req: Request, state: str, done: Outcome, now: datetime
    ) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """INSERT INTO support_actions (id, action, kind, subject, reason, actor, state,
                          fingerprint, until_time, destination, amount, tx_hash, result,
                          request_id, request_hash, create_time)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                   ON CONFLICT (request_id) DO NOTHING RETURNING *""",
                action_id,
                req.action.value,
                req.kind.value,
                req.subject,
                req.reason,
                req.actor,
                state,
                done.fingerprint,
                done.until,
                req.destination.lower(),
                done.amount,
                req.tx_hash,
                done.result,
                req.request_id,
                req.request_hash,
                now,
            )
            if row is None:  # a concurrent retry of the same request recorded it first
                row = await conn.fetchrow(
                    "SELECT * FROM support_actions WHERE request_id = $1", req.request_id
                )
                assert row is not None
                idempotency.check(
                    row["request_hash"], req.request_hash, str(req.request_id), name(row["id"])
                )
        return row

    async def page(
        self, subject: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[asyncpg.Record]:
        """The audit trail, newest first."""
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    """SELECT * FROM support_actions
                        WHERE ($1 = '' OR subject = $1)
                          AND ($2::timestamptz IS NULL OR (create_time, id) < ($2, $3))
                        ORDER BY create_time DESC, id DESC LIMIT $4""",
                    subject,
                    before[0] if before else None,
                    before[1] if before else "",
                    limit,
                )
            )


# Support actions that resolve a reconciliation exception, and how.
_RESOLUTIONS = {
    decide.Action.ACKNOWLEDGE: exceptions.Action.ACKNOWLEDGE,
    decide.Action.REBASELINE: exceptions.Action.REBASELINE,
}


def _request_of(row: asyncpg.Record, action_id: str) -> Request:
    """The request a pending action recorded, to perform or check it later."""
    return Request(
        decide.Action(row["action"]),
        decide.Kind(row["kind"]),
        row["subject"],
        row["reason"],
        row["actor"],
        row["request_id"],
        bytes(row["request_hash"]) if row["request_hash"] else _hash(action_id),
        row["destination"],
        row["tx_hash"],
    )


async def _locked(conn: asyncpg.Connection, action_id: str) -> asyncpg.Record:
    """The action's row, locked until the transaction ends: decisions about one
    action (approve, decline) are taken one after the other."""
    row = await conn.fetchrow("SELECT * FROM support_actions WHERE id = $1 FOR UPDATE", action_id)
    if row is None:
        raise not_found("support_action", name(action_id))
    return row


def _not_pending(row: asyncpg.Record) -> Refusal:
    assert row["state"] != "pending_approval", row
    return precondition(
        reasons.SUPPORT_ACTION_NOT_PENDING,
        f"{name(row['id'])} is {row['state']}, no longer pending approval",
        name=name(row["id"]),
        state=row["state"],
    )


def _invoice(subject: str) -> tuple[str, str]:
    parsed = names.parse_invoice(subject)
    assert parsed is not None, subject  # the decider offered an invoice action
    return parsed
