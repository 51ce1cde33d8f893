"""SupportService: the gRPC edge of core/support, for platform keys.

Validates every field (all violations at once, nothing written), then checks
the action's scope, then hands over to core/support/actions.py, which decides
against the subject as it stands. Authentication comes first at the edge
(core/api/guard.py); the scope is checked after validation so a malformed
request is INVALID_ARGUMENT whoever sends it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import grpc

from core import idempotency, names
from core.api import validate
from core.api.auth import Authenticator, authorize
from core.api.errors import rpc
from core.errors import invalid
from core.payouts import destinations
from core.render import support as rendering
from core.support import decide, queue
from core.support.actions import Request, SupportActions
from kassa.core.v1 import support_pb2 as pb
from kassa.core.v1 import support_pb2_grpc as pb_grpc

MAX_REASON_LEN = 500
# The effect of an action runs under "support:r:" + its request_id (128 at most).
MAX_REQUEST_ID_LEN = 110
_NAME = re.compile(r"supportActions/([0-9a-f]{20})")
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_SCOPES = {
    pb.REFUND_SCOPE_EXCESS: decide.Action.REFUND_EXCESS,
    pb.REFUND_SCOPE_WHOLE: decide.Action.REFUND_WHOLE,
}


def _common(
    subject: str, reason: str, request_id: str, violations: validate.Violations
) -> str | None:
    if queue.source_of(subject) is None or not _well_named(subject):
        violations.append(
            (
                "subject",
                "merchants/{m}/invoices/{i}, merchants/{m}/payouts/{p}, "
                "merchants/{m}/webhookEndpoints/{e} or exceptions/{id}",
            )
        )
    if not reason.strip() or len(reason) > MAX_REASON_LEN:
        violations.append(("reason", f"required, at most {MAX_REASON_LEN} characters"))
    if len(request_id) > MAX_REQUEST_ID_LEN:
        violations.append(("request_id", f"at most {MAX_REQUEST_ID_LEN} characters"))
        return None
    return idempotency.request_id_of(request_id, violations)


def _well_named(subject: str) -> bool:
    if subject.startswith("exceptions/"):
        return re.fullmatch(r"exceptions/[0-9a-f]{20}", subject) is not None
    return (
        names.parse_invoice(subject) is not None
        or names.parse_payout(subject) is not None
        or names.parse_webhook_endpoint(subject) is not None
    )


def _kind(value: int, violations: validate.Violations) -> decide.Kind:
    kind = rendering.KIND_OF.get(value)
    if kind is None:
        violations.append(("kind", "the item's kind (ITEM_KIND_…)"))
        return decide.Kind.INVOICE_UNDERPAID  # unused: the request is refused
    return kind


class SupportService(pb_grpc.SupportServiceServicer):
    def __init__(
        self,
        actions: SupportActions,
        auth: Authenticator,
        clock: Callable[[], datetime],
    ) -> None:
        self.actions = actions
        self.auth = auth
        self.clock = clock

    async def _take(
        self,
        context: grpc.aio.ServicerContext,
        request: pb.AcceptAsPaidRequest
        | pb.RequestTopUpRequest
        | pb.RefundInvoiceRequest
        | pb.MarkForReviewRequest
        | pb.AttachTransactionRequest
        | pb.RedeliverFailedWebhooksRequest
        | pb.AcknowledgeRequest
        | pb.RebaselineRequest,
        action: decide.Action,
        kind: decide.Kind,
        violations: validate.Violations,
        destination: str = "",
        tx_hash: str = "",
    ) -> pb.SupportAction:
        request_id = _common(request.subject, request.reason, request.request_id, violations)
        if violations:
            raise invalid(violations)
        principal = await self.auth.require(context, decide.SCOPE[action], None)
        row = await self.actions.take(
            Request(
                action,
                kind,
                request.subject,
                request.reason,
                principal.actor,
                request_id,
                # The action is part of the body: the same id for another action is reused.
                idempotency.request_hash(action.value.encode() + request.SerializeToString()),
                destination,
                tx_hash,
            )
        )
        return rendering.action(row)

    @rpc
    async def ListSupportItems(
        self, request: pb.ListSupportItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSupportItemsResponse:
        violations: validate.Violations = []
        kinds = set()
        for k in request.kinds:
            if k not in rendering.KIND_OF:
                violations.append(("kinds", f"unknown kind {k}"))
            else:
                kinds.add(rendering.KIND_OF[k])
        wanted = frozenset(kinds or decide.Kind)
        binding = f"support|{sorted(wanted)}"
        after = None
        if request.page_token:
            after = validate.decode_page_token(request.page_token, binding)
            if after is None:
                violations.append(("page_token", "not a token of this listing"))
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "support:read", None)
        now = self.clock()
        items, last = await self.actions.queue_page(
            wanted, after, validate.page_size(request.page_size), now
        )
        answer = pb.ListSupportItemsResponse(items=[rendering.item(i, now) for i in items])
        if last is not None:
            answer.next_page_token = validate.encode_page_token(last[0], last[1], binding)
        return answer

    @rpc
    async def AcceptAsPaid(
        self, request: pb.AcceptAsPaidRequest, context: grpc.aio.ServicerContext
    ) -> pb.AcceptAsPaidResponse:
        violations: validate.Violations = []
        if names.parse_invoice(request.subject) is None:
            violations.append(("subject", "merchants/{m}/invoices/{i}"))
        action = await self._take(
            context,
            request,
            decide.Action.ACCEPT_AS_PAID,
            decide.Kind.INVOICE_UNDERPAID,
            violations,
        )
        return pb.AcceptAsPaidResponse(action=action)

    @rpc
    async def RequestTopUp(
        self, request: pb.RequestTopUpRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestTopUpResponse:
        violations: validate.Violations = []
        if names.parse_invoice(request.subject) is None:
            violations.append(("subject", "merchants/{m}/invoices/{i}"))
        action = await self._take(
            context,
            request,
            decide.Action.REQUEST_TOP_UP,
            decide.Kind.INVOICE_UNDERPAID,
            violations,
        )
        return pb.RequestTopUpResponse(action=action)

    @rpc
    async def RefundInvoice(
        self, request: pb.RefundInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefundInvoiceResponse:
        violations: validate.Violations = []
        if names.parse_invoice(request.subject) is None:
            violations.append(("subject", "merchants/{m}/invoices/{i}"))
        kind = _kind(request.kind, violations)
        action = _SCOPES.get(request.scope)
        if action is None:
            violations.append(("scope", "REFUND_SCOPE_EXCESS or REFUND_SCOPE_WHOLE"))
        bad_destination = destinations.syntax(request.destination)
        if bad_destination is not None:
            violations.append(("destination", bad_destination))
        taken = await self._take(
            context,
            request,
            action or decide.Action.REFUND_WHOLE,
            kind,
            violations,
            destination=request.destination,
        )
        return pb.RefundInvoiceResponse(action=taken)

    @rpc
    async def MarkForReview(
        self, request: pb.MarkForReviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkForReviewResponse:
        violations: validate.Violations = []
        kind = _kind(request.kind, violations)
        action = await self._take(context, request, decide.Action.MARK_FOR_REVIEW, kind, violations)
        return pb.MarkForReviewResponse(action=action)

    @rpc
    async def AttachTransaction(
        self, request: pb.AttachTransactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.AttachTransactionResponse:
        violations: validate.Violations = []
        kind = _kind(request.kind, violations)
        if not _TX_HASH.fullmatch(request.tx_hash):
            violations.append(("tx_hash", "0x and 64 hex digits"))
        action = await self._take(
            context,
            request,
            decide.Action.ATTACH_TRANSACTION,
            kind,
            violations,
            tx_hash=request.tx_hash.lower(),
        )
        return pb.AttachTransactionResponse(action=action)

    @rpc
    async def RedeliverFailedWebhooks(
        self, request: pb.RedeliverFailedWebhooksRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeliverFailedWebhooksResponse:
        violations: validate.Violations = []
        if names.parse_webhook_endpoint(request.subject) is None:
            violations.append(("subject", "merchants/{m}/webhookEndpoints/{e}"))
        action = await self._take(
            context,
            request,
            decide.Action.REDELIVER_WEBHOOKS,
            decide.Kind.WEBHOOK_ENDPOINT_FAILING,
            violations,
        )
        return pb.RedeliverFailedWebhooksResponse(action=action)

    @rpc
    async def Acknowledge(
        self, request: pb.AcknowledgeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AcknowledgeResponse:
        violations: validate.Violations = []
        kind = _kind(request.kind, violations)
        action = await self._take(context, request, decide.Action.ACKNOWLEDGE, kind, violations)
        return pb.AcknowledgeResponse(action=action)

    @rpc
    async def Rebaseline(
        self, request: pb.RebaselineRequest, context: grpc.aio.ServicerContext
    ) -> pb.RebaselineResponse:
        violations: validate.Violations = []
        source = queue.source_of(request.subject)
        if source is not None and source[0] != "mismatches":
            violations.append(("subject", "exceptions/{id}: only an exception is re-baselined"))
        action = await self._take(
            context,
            request,
            decide.Action.REBASELINE,
            decide.Kind.RECONCILIATION_MISMATCH,
            violations,
        )
        return pb.RebaselineResponse(action=action)

    @rpc
    async def ApproveSupportAction(
        self, request: pb.ApproveSupportActionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveSupportActionResponse:
        match = _NAME.fullmatch(request.name)
        if match is None:
            raise invalid([("name", "supportActions/{id}")])
        principal = await self.auth.require(context, "support:approve", None)
        row = await self.actions.approve(match.group(1), principal.actor)
        return pb.ApproveSupportActionResponse(action=rendering.action(row))

    @rpc
    async def DeclineSupportAction(
        self, request: pb.DeclineSupportActionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeclineSupportActionResponse:
        violations: validate.Violations = []
        match = _NAME.fullmatch(request.name)
        if match is None:
            violations.append(("name", "supportActions/{id}"))
        if not request.reason.strip() or len(request.reason) > MAX_REASON_LEN:
            violations.append(("reason", f"required, at most {MAX_REASON_LEN} characters"))
        if violations or match is None:
            raise invalid(violations)
        principal = await self.auth.principal(context)
        if principal.merchant_id is not None:
            authorize(principal, "support:approve", None)  # support is for platform keys
        row = await self.actions.decline(
            match.group(1),
            principal.actor,
            request.reason,
            # Rejecting another operator's action takes what approving it takes;
            # withdrawing one's own takes nothing more than being its key.
            lambda: authorize(principal, "support:approve", None),
        )
        return pb.DeclineSupportActionResponse(action=rendering.action(row))

    @rpc
    async def ListSupportActions(
        self, request: pb.ListSupportActionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSupportActionsResponse:
        violations: validate.Violations = []
        if request.subject and queue.source_of(request.subject) is None:
            violations.append(("subject", "an item's subject, or empty for all"))
        binding = f"support-actions|{request.subject}"
        before = None
        if request.page_token:
            before = validate.decode_page_token(request.page_token, binding)
            if before is None:
                violations.append(("page_token", "not a token of this listing"))
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "support:read", None)
        limit = validate.page_size(request.page_size)
        rows = await self.actions.page(request.subject, before, limit + 1)
        answer = pb.ListSupportActionsResponse(actions=[rendering.action(r) for r in rows[:limit]])
        if len(rows) > limit:
            last = rows[limit - 1]
            answer.next_page_token = validate.encode_page_token(
                last["create_time"], last["id"], binding
            )
        return answer
