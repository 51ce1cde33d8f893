"""Every unit accounted for, end to end against anvil (issue 19): funds that
reach a cancelled, refunded or marked invoice — or race a cancel — are
recorded, announced and refundable, and `ledger check` passes; cancel and mark
are idempotent by request_id."""

from __future__ import annotations

import secrets
import threading
import time

import grpc
import pytest

from kassa.core.v1 import invoice_pb2, payout_pb2, payout_pb2_grpc
from localstack.fullstack import LocalStack
from tests.support.events import EventTap
from tests.support.grpc_errors import rich
from tests.support.invoices import create
from tests.support.kassactl import bootstrap_key
from tests.support.payouts import fresh_address, ledger_check, paid_invoice, wait_payout

CONFIRMED = {payout_pb2.PAYOUT_STATE_CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED}


def _pay(stack: LocalStack, address: str, amount: int) -> None:
    stack.anvil.rpc.wait_receipt(stack.token.transfer(stack.customer, address, amount))


def _settle(stack: LocalStack, invoices, name: str, received: str) -> invoice_pb2.Invoice:
    """Mines until the invoice's confirmed funds reach `received`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stack.anvil.mine(1)
        got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=name)).invoice
        if got.amount_received == received:
            return got
        time.sleep(0.2)
    raise TimeoutError(f"{name} never received {received}")


def _refund_all(stack: LocalStack, payouts, name: str, expected: int) -> None:
    """The invoice's refundable funds go back to a customer address, confirmed."""
    customer = fresh_address()
    refund = payouts.CreateRefund(
        payout_pb2.CreateRefundRequest(
            invoice=name,
            destination=customer,
            reference="every-unit",
            request_id=f"r-{secrets.token_hex(6)}",
        )
    ).payout
    assert refund.amount == str(expected)
    assert wait_payout(stack, payouts, refund.name, CONFIRMED).state == (
        payout_pb2.PAYOUT_STATE_CONFIRMED
    )
    assert stack.token.balance_of(customer) == expected


def _ledger_ok(stack: LocalStack) -> None:
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def test_funds_paid_to_a_cancelled_invoice_are_recorded_announced_and_refunded(
    stack: LocalStack, account, tap: EventTap
) -> None:
    parent, invoices, payouts = account
    invoice = create(stack, invoices, parent, "cancelled-then-paid")
    cancelled = invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=invoice.name)).invoice
    assert cancelled.state == invoice_pb2.INVOICE_STATE_CANCELLED
    due = int(invoice.amount_due)
    _pay(stack, invoice.deposit_address, due)
    got = _settle(stack, invoices, invoice.name, str(due))
    assert got.state == invoice_pb2.INVOICE_STATE_CANCELLED
    assert invoice_pb2.INVOICE_FLAG_PAID_LATE in got.flags
    assert [p.amount for p in got.payments] == [str(due)]
    assert got.amount_refundable == str(due)  # visible as refundable
    late = tap.wait_for(invoice.name, "invoice.late_funds")[-1]
    assert late.invoice.state == invoice_pb2.INVOICE_STATE_CANCELLED
    assert [p.amount for p in late.invoice.payments] == [str(due)]
    _ledger_ok(stack)
    _refund_all(stack, payouts, invoice.name, due)
    after = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert after.state == invoice_pb2.INVOICE_STATE_CANCELLED
    assert after.amount_refunded == str(due) and after.amount_refundable == "0"
    _ledger_ok(stack)


def test_a_cancel_racing_a_payment_never_loses_it(
    stack: LocalStack, account, tap: EventTap
) -> None:
    parent, invoices, payouts = account
    outcomes: list[str] = []
    for round_ in range(12):
        invoice = create(stack, invoices, parent, f"race-{round_}")
        due = int(invoice.amount_due)
        answer: list[object] = []

        def cancel(
            name: str = invoice.name, into: list[object] = answer, delay_s: float = 0.0
        ) -> None:
            time.sleep(delay_s)
            try:
                into.append(invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=name)))
            except grpc.RpcError as exc:
                into.append(exc)

        # Automine: the transfer is in a block as soon as it is sent; the cancel
        # races the adapter and the block applier.
        # Staggered by a few ms a round, so both orders happen.
        racer = threading.Thread(target=cancel, kwargs={"delay_s": (round_ % 4) * 0.015})
        racer.start()
        _pay(stack, invoice.deposit_address, due)
        racer.join(timeout=20)
        [result] = answer
        got = _settle(stack, invoices, invoice.name, str(due))
        assert [p.amount for p in got.payments] == [str(due)], got
        if isinstance(result, grpc.RpcError):
            # The payment won: the cancel was refused and the invoice was paid.
            assert rich(result).reason == "INVOICE_NOT_CANCELLABLE"
            assert got.state == invoice_pb2.INVOICE_STATE_PAID
            tap.wait_for(invoice.name, "invoice.paid")
            outcomes.append("refused")
        else:
            # The cancel won: the payment is parked on the cancelled invoice, announced.
            assert got.state == invoice_pb2.INVOICE_STATE_CANCELLED
            assert invoice_pb2.INVOICE_FLAG_PAID_LATE in got.flags
            tap.wait_for(invoice.name, "invoice.late_funds")
            outcomes.append("cancelled")
            if outcomes.count("cancelled") == 1:
                _refund_all(stack, payouts, invoice.name, due)
    _ledger_ok(stack)
    print("cancel race outcomes:", outcomes)


def test_a_second_payment_after_a_full_refund_is_flagged_announced_and_refundable(
    stack: LocalStack, account, tap: EventTap
) -> None:
    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent)
    due = int(invoice.amount_due)
    _refund_all(stack, payouts, invoice.name, due)
    refunded = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert refunded.state == invoice_pb2.INVOICE_STATE_REFUNDED
    _pay(stack, invoice.deposit_address, due)
    got = _settle(stack, invoices, invoice.name, str(2 * due))
    assert got.state == invoice_pb2.INVOICE_STATE_REFUNDED
    assert invoice_pb2.INVOICE_FLAG_DUPLICATE in got.flags
    assert got.amount_refundable == str(due)
    late = tap.wait_for(invoice.name, "invoice.late_funds")[-1]
    assert invoice_pb2.INVOICE_FLAG_DUPLICATE in late.invoice.flags
    _ledger_ok(stack)
    _refund_all(stack, payouts, invoice.name, due)
    _ledger_ok(stack)


def test_a_crypto_payment_after_a_manual_mark_is_flagged_announced_and_refundable(
    stack: LocalStack, account, tap: EventTap
) -> None:
    parent, invoices, payouts = account
    invoice = create(stack, invoices, parent, "marked-then-paid")
    marked = invoices.MarkInvoice(
        invoice_pb2.MarkInvoiceRequest(
            name=invoice.name, state=invoice_pb2.INVOICE_STATE_PAID, reason="paid by wire"
        )
    ).invoice
    assert marked.state == invoice_pb2.INVOICE_STATE_PAID
    due = int(invoice.amount_due)
    _pay(stack, invoice.deposit_address, due)
    got = _settle(stack, invoices, invoice.name, str(due))
    assert got.state == invoice_pb2.INVOICE_STATE_PAID
    assert {invoice_pb2.INVOICE_FLAG_MARKED, invoice_pb2.INVOICE_FLAG_DUPLICATE} <= set(got.flags)
    tap.wait_for(invoice.name, "invoice.late_funds")
    _ledger_ok(stack)
    _refund_all(stack, payouts, invoice.name, due)
    _ledger_ok(stack)


def test_marking_a_paid_invoice_expired_is_refused(stack: LocalStack, account) -> None:
    parent, invoices, _ = account
    invoice = paid_invoice(stack, invoices, parent)
    with pytest.raises(grpc.RpcError) as refused:
        invoices.MarkInvoice(
            invoice_pb2.MarkInvoiceRequest(
                name=invoice.name, state=invoice_pb2.INVOICE_STATE_EXPIRED, reason="oops"
            )
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich(refused.value).reason == "INVOICE_HAS_FUNDS"
    still = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert still.state == invoice_pb2.INVOICE_STATE_PAID and not still.HasField("mark")


def test_cancel_and_mark_are_idempotent_by_request_id(stack: LocalStack, invoices, tap) -> None:
    a = create(stack, invoices, tap.parent, "idem-a")
    b = create(stack, invoices, tap.parent, "idem-b")
    first = invoices.CancelInvoice(
        invoice_pb2.CancelInvoiceRequest(name=a.name, request_id="cancel-1")
    ).invoice
    retry = invoices.CancelInvoice(
        invoice_pb2.CancelInvoiceRequest(name=a.name, request_id="cancel-1")
    ).invoice
    assert first == retry and retry.state == invoice_pb2.INVOICE_STATE_CANCELLED
    with pytest.raises(grpc.RpcError) as reused:
        invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=b.name, request_id="cancel-1"))
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert rich(reused.value).reason == "REQUEST_ID_REUSED"
    untouched = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=b.name)).invoice
    assert untouched.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT

    def mark(name: str, state: int, reason: str) -> invoice_pb2.Invoice:
        return invoices.MarkInvoice(
            invoice_pb2.MarkInvoiceRequest(
                name=name, state=state, reason=reason, request_id="mark-1"
            )
        ).invoice

    marked = mark(b.name, invoice_pb2.INVOICE_STATE_EXPIRED, "customer walked away")
    assert marked.state == invoice_pb2.INVOICE_STATE_EXPIRED
    assert mark(b.name, invoice_pb2.INVOICE_STATE_EXPIRED, "customer walked away") == marked
    # The same id with another body (it flipped the invoice to paid before) is refused.
    with pytest.raises(grpc.RpcError) as flipped:
        mark(b.name, invoice_pb2.INVOICE_STATE_PAID, "customer walked away")
    assert rich(flipped.value).reason == "REQUEST_ID_REUSED"
    final = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=b.name)).invoice
    assert final.state == invoice_pb2.INVOICE_STATE_EXPIRED
    assert [e.type for e in tap.wait_for(b.name, "invoice.marked")].count("invoice.marked") == 1


def test_an_overpayment_after_expiry_is_announced_as_overpaid_with_the_late_flag(
    stack: LocalStack, invoices, tap: EventTap
) -> None:
    invoice = invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=tap.parent,
            merchant_order_id="late-over",
            asset=stack.token_asset,
            ttl_seconds=1,
            price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
        )
    ).invoice
    tap.wait_for(invoice.name, "invoice.expired", timeout_s=10)
    _pay(stack, invoice.deposit_address, int(invoice.amount_due) + 1_000_000)
    stack.anvil.mine(2)
    seen = tap.wait_for(invoice.name, "invoice.overpaid")
    assert [e.type for e in seen] == ["invoice.detected", "invoice.confirming", "invoice.overpaid"]
    assert {invoice_pb2.INVOICE_FLAG_PAID_LATE, invoice_pb2.INVOICE_FLAG_PAID_OVER} <= set(
        seen[-1].invoice.flags
    )


def test_funds_parked_on_a_cancelled_invoice_are_swept(stack: LocalStack, account) -> None:
    parent, invoices, _ = account
    invoice = create(stack, invoices, parent, "cancelled-then-swept")
    invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=invoice.name))
    due = int(invoice.amount_due)
    _pay(stack, invoice.deposit_address, due)
    _settle(stack, invoices, invoice.name, str(due))
    deposit = invoice.deposit_address.lower()
    token = bootstrap_key(stack.dsn, "sweeps:read,sweeps:write")
    with stack.core_setup().channel(token) as channel:
        sweeps = payout_pb2_grpc.SweepServiceStub(channel)
        planned = sweeps.RunSweeps(payout_pb2.RunSweepsRequest(chain=stack.chain)).sweeps
        [sweep] = [
            s
            for s in planned
            if s.invoice == invoice.name and s.kind == payout_pb2.SWEEP_KIND_SWEEP
        ]
        assert sweep.source_address == deposit and int(sweep.amount) == due
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = sweeps.GetSweep(payout_pb2.GetSweepRequest(name=sweep.name)).sweep
            if done.state == payout_pb2.PAYOUT_STATE_CONFIRMED:
                break
            stack.anvil.mine(1)
            time.sleep(0.25)
        assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED
    stack.anvil.mine(2)
    assert stack.token.balance_of(deposit) == 0
    _ledger_ok(stack)
