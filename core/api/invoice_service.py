"""InvoiceService handlers: authorise, validate, translate to core.invoices.invoicing."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from core import idempotency, names, reasons
from core.api import validate
from core.api.auth import Authenticator, authorize
from core.api.errors import invalid, rpc
from core.config import Config
from core.errors import unavailable
from core.invoices.invoicing import Invoicing, fingerprint
from core.invoices.state import State
from core.render import invoices as render
from kassa.core.v1 import invoice_pb2 as pb
from kassa.core.v1 import invoice_pb2_grpc as pb_grpc

_MARK_STATES = {pb.INVOICE_STATE_PAID: State.PAID, pb.INVOICE_STATE_EXPIRED: State.EXPIRED}


def _invoice_name(name: str) -> tuple[str, str]:
    parsed = names.parse_invoice(name)
    if parsed is None:
        raise invalid([("name", "must be merchants/{merchant}/invoices/{invoice}")])
    return parsed


class InvoiceService(pb_grpc.InvoiceServiceServicer):
    def __init__(
        self,
        invoicing: Invoicing,
        config: Config,
        auth: Authenticator,
        head_of: Callable[[str], int | None],
        chain_problem: Callable[[str], str | None] = lambda chain: None,
    ) -> None:
        self.invoicing = invoicing
        self.config = config
        self.auth = auth
        # The chain head each follower last saw, for payments' confirmation counts.
        self.head_of = head_of
        # Why a chain is not followed now (None: it is): no invoice is taken on it then,
        # since a payment to it would go unseen until its adapter is back.
        self.chain_problem = chain_problem

    @rpc
    async def CreateInvoice(
        self, request: pb.CreateInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateInvoiceResponse:
        principal = await self.auth.principal(context)
        spec, violations = validate.create_invoice(request, self.config)
        if spec is None:
            raise invalid(violations)
        authorize(principal, "invoices:write", spec.merchant_id)
        problem = self.chain_problem(spec.asset.chain)
        if problem is not None:
            raise unavailable(
                reasons.CHAIN_UNAVAILABLE,
                f"{spec.asset.chain} is not being followed ({problem}); no invoice was created",
                chain=spec.asset.chain,
            )
        row = await self.invoicing.create(
            spec, fingerprint(request.SerializeToString(deterministic=True))
        )
        return pb.CreateInvoiceResponse(invoice=render.invoice(row))

    @rpc
    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInvoiceResponse:
        principal = await self.auth.principal(context)
        merchant, invoice_id = _invoice_name(request.name)
        authorize(principal, "invoices:read", merchant)
        row, payments = await self.invoicing.get(merchant, invoice_id, request.name)
        return pb.GetInvoiceResponse(
            invoice=render.invoice(row, payments, self.head_of(row["chain"]))
        )

    @rpc
    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        principal = await self.auth.principal(context)
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations)
        where = validate.invoice_filter(request, violations)
        after = None
        if request.page_token:
            after = validate.decode_page_token(
                request.page_token, f"invoices|{request.parent}|{where.digest()}"
            )
            if after is None:
                violations.append(
                    ("page_token", "is not a token this server issued for these filters")
                )
        if request.page_size > validate.MAX_PAGE_SIZE:
            violations.append(("page_size", f"must be at most {validate.MAX_PAGE_SIZE}"))
        if violations:
            raise invalid(violations)
        authorize(principal, "invoices:read", merchant)
        size = validate.page_size(request.page_size)
        rows = await self.invoicing.list(merchant, size, after, where)
        response = pb.ListInvoicesResponse(invoices=[render.invoice(r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            response.next_page_token = validate.encode_page_token(
                last["create_time"], last["id"], f"invoices|{request.parent}|{where.digest()}"
            )
        return response

    @rpc
    async def CancelInvoice(
        self, request: pb.CancelInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelInvoiceResponse:
        principal = await self.auth.principal(context)
        merchant, invoice_id = _invoice_name(request.name)
        violations: validate.Violations = []
        request_id = idempotency.request_id_of(request.request_id, violations)
        if violations:
            raise invalid(violations)
        authorize(principal, "invoices:write", merchant)
        row = await self.invoicing.cancel(
            merchant, invoice_id, request.name, request_id, idempotency.request_hash(request)
        )
        return pb.CancelInvoiceResponse(invoice=render.invoice(row))

    @rpc
    async def MarkInvoice(
        self, request: pb.MarkInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkInvoiceResponse:
        principal = await self.auth.principal(context)
        merchant, invoice_id = _invoice_name(request.name)
        violations: validate.Violations = []
        if request.state not in _MARK_STATES:
            violations.append(("state", "must be INVOICE_STATE_PAID or INVOICE_STATE_EXPIRED"))
        if not request.reason.strip() or len(request.reason) > 1000:
            violations.append(("reason", "is required, at most 1000 characters"))
        request_id = idempotency.request_id_of(request.request_id, violations)
        if violations:
            raise invalid(violations)
        authorize(principal, "invoices:mark", merchant)
        row = await self.invoicing.mark(
            merchant,
            invoice_id,
            request.name,
            _MARK_STATES[request.state],
            request.reason,
            principal.actor,
            request_id,
            idempotency.request_hash(request),
        )
        return pb.MarkInvoiceResponse(invoice=render.invoice(row))
