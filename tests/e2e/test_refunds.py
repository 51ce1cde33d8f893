"""Refunds end to end: an overpaid invoice's excess, then the rest, reach the
customer through the signer and the chain; the invoice becomes refunded."""

from __future__ import annotations

import grpc
import pytest

from kassa.core.v1 import (
    event_pb2,
    event_pb2_grpc,
    invoice_pb2,
    payout_pb2,
)
from localstack.fullstack import LocalStack
from tests.support.payouts import (
    fresh_address,
    ledger_check,
    paid_invoice,
    wait_payout,
)

FINAL = {payout_pb2.PAYOUT_STATE_CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED}


def _refund(payouts, invoice: str, to: str, amount: str = "", request_id: str = ""):
    return payouts.CreateRefund(
        payout_pb2.CreateRefundRequest(
            invoice=invoice, destination=to, amount=amount, reference="rma-1", request_id=request_id
        )
    ).payout


def _reason(exc: grpc.RpcError) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def test_overpaid_invoice_refunded_in_two_parts(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent, pay_extra=5_000_000)  # 30 for 25 due
    assert invoice.state == invoice_pb2.INVOICE_STATE_OVERPAID
    customer = fresh_address()

    with pytest.raises(grpc.RpcError) as too_much:
        _refund(payouts, invoice.name, customer, "30000001")
    assert too_much.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(too_much.value) == "REFUND_EXCEEDS_RECEIVED"

    excess = _refund(payouts, invoice.name, customer, "5000000", request_id="excess")
    assert excess.kind == payout_pb2.PAYOUT_KIND_REFUND and excess.invoice == invoice.name
    # While the first refund is in flight, only the rest can be refunded.
    with pytest.raises(grpc.RpcError) as in_flight:
        _refund(payouts, invoice.name, customer, "25000001")
    assert _reason(in_flight.value) == "REFUND_EXCEEDS_RECEIVED"
    done = wait_payout(stack, payouts, excess.name, FINAL)
    assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED
    assert stack.token.balance_of(customer) == 5_000_000
    after = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert after.state == invoice_pb2.INVOICE_STATE_OVERPAID

    rest = _refund(payouts, invoice.name, customer)  # everything not yet refunded
    assert rest.amount == "25000000"
    assert wait_payout(stack, payouts, rest.name, FINAL).state == payout_pb2.PAYOUT_STATE_CONFIRMED
    assert stack.token.balance_of(customer) == 30_000_000
    refunded = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert refunded.state == invoice_pb2.INVOICE_STATE_REFUNDED

    with pytest.raises(grpc.RpcError) as closed:
        _refund(payouts, invoice.name, customer, "1")
    assert _reason(closed.value) == "INVOICE_NOT_REFUNDABLE"
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr

    # Both refunds and the invoice's end are announced, each with its resource as it stood.
    seen = _events(stack, parent, until={"invoice.refunded"}, confirmed_refunds=2)
    refund_events = [e for e in seen if e.type.startswith("refund.")]
    assert {e.payout.name for e in refund_events} == {excess.name, rest.name}
    confirmed = [e for e in refund_events if e.type == "refund.confirmed"]
    assert sorted(e.payout.amount for e in confirmed) == ["25000000", "5000000"]
    assert all(e.payout.state == payout_pb2.PAYOUT_STATE_CONFIRMED for e in confirmed)
    refunded_event = next(e for e in seen if e.type == "invoice.refunded")
    assert refunded_event.invoice.state == invoice_pb2.INVOICE_STATE_REFUNDED
    assert [e.sequence for e in seen] == sorted(e.sequence for e in seen)


def _events(
    stack: LocalStack, parent: str, until: set[str], confirmed_refunds: int
) -> list[event_pb2.Event]:
    """The merchant's events from the start until `until` and the confirmed refunds were seen."""
    core = stack.core_setup()
    seen: list[event_pb2.Event] = []
    with core.channel(core.admin_token()) as channel:
        stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
            event_pb2.StreamEventsRequest(parent=parent), timeout=20
        )
        for response in stream:
            seen.append(response.event)
            types = [e.type for e in seen]
            if until <= set(types) and types.count("refund.confirmed") >= confirmed_refunds:
                stream.cancel()
                break
    return seen


def test_refund_of_an_unpaid_invoice_is_refused(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    invoice = invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id="unpaid",
            asset=stack.token_asset,
            price=invoice_pb2.FiatAmount(amount="5.00", currency="USD"),
        )
    ).invoice
    with pytest.raises(grpc.RpcError) as refused:
        _refund(payouts, invoice.name, fresh_address())
    assert _reason(refused.value) == "INVOICE_NOT_REFUNDABLE"
