"""InvoiceService handlers: translate between protos and core.invoicing."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from core.api import render, validate
from core.api.errors import ApiError, invalid
from core.invoicing import Invoicing, fingerprint
from kassa.core.v1 import invoice_pb2 as pb
from kassa.core.v1 import invoice_pb2_grpc as pb_grpc


class InvoiceService(pb_grpc.InvoiceServiceServicer):
    def __init__(self, invoicing: Invoicing, head_of: Callable[[str], int | None]) -> None:
        self.invoicing = invoicing
        # The chain head each follower last saw, for payments' confirmation counts.
        self.head_of = head_of

    async def CreateInvoice(
        self, request: pb.CreateInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateInvoiceResponse:
        try:
            spec, violations = validate.create_invoice(request, self.invoicing.config)
            if spec is None:
                raise invalid(violations)
            row = await self.invoicing.create(
                spec, fingerprint(request.SerializeToString(deterministic=True))
            )
            return pb.CreateInvoiceResponse(invoice=render.invoice(row))
        except ApiError as exc:
            await context.abort_with_status(exc.to_status())
            raise  # unreachable: abort raises

    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInvoiceResponse:
        try:
            parsed = validate.invoice_name(request.name)
            if parsed is None:
                raise invalid([("name", "must be merchants/{merchant}/invoices/{invoice}")])
            row, payments = await self.invoicing.get(parsed[0], parsed[1], request.name)
            return pb.GetInvoiceResponse(
                invoice=render.invoice(row, payments, self.head_of(row["chain"]))
            )
        except ApiError as exc:
            await context.abort_with_status(exc.to_status())
            raise

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        try:
            violations: validate.Violations = []
            merchant = validate.merchant_of(request.parent, violations)
            after = None
            if request.page_token:
                after = validate.decode_page_token(request.page_token)
                if after is None:
                    violations.append(("page_token", "is not a token this server issued"))
            if request.page_size > validate.MAX_PAGE_SIZE:
                violations.append(("page_size", f"must be at most {validate.MAX_PAGE_SIZE}"))
            if violations:
                raise invalid(violations)
            size = validate.page_size(request.page_size)
            rows = await self.invoicing.list(merchant, size, after)
            response = pb.ListInvoicesResponse(invoices=[render.invoice(r) for r in rows[:size]])
            if len(rows) > size:
                last = rows[size - 1]
                response.next_page_token = validate.encode_page_token(
                    last["create_time"], last["id"]
                )
            return response
        except ApiError as exc:
            await context.abort_with_status(exc.to_status())
            raise
