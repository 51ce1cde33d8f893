"""Every payment exception end to end, against anvil and PostgreSQL."""

from __future__ import annotations

from kassa.core.v1 import invoice_pb2
from localstack.fullstack import LocalStack
from tests.support.invoices import create


def pay(stack: LocalStack, address: str, amount: int) -> str:
    tx = stack.token.transfer(stack.customer, address, amount)
    stack.anvil.rpc.wait_receipt(tx)
    return tx


def flags(event) -> set[int]:
    return set(event.invoice.flags)


def test_partial_payments_add_up_to_paid(stack: LocalStack, invoices, tap) -> None:
    invoice = create(stack, invoices, tap.parent, "partial")
    due = int(invoice.amount_due)
    pay(stack, invoice.deposit_address, due // 2)
    detected = tap.wait_for(invoice.name, "invoice.detected")[-1]
    assert invoice_pb2.INVOICE_FLAG_PAID_PARTIAL in flags(detected)
    pay(stack, invoice.deposit_address, due - due // 2)
    tap.wait_for(invoice.name, "invoice.confirming")
    stack.anvil.mine(3)
    paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
    assert paid.invoice.amount_received == str(due)
    assert len(paid.invoice.payments) == 2
    assert invoice_pb2.INVOICE_FLAG_PAID_PARTIAL not in flags(paid)


def test_overpayment_records_the_excess(stack: LocalStack, invoices, tap) -> None:
    invoice = create(stack, invoices, tap.parent, "over")
    pay(stack, invoice.deposit_address, int(invoice.amount_due) + 1_000_000)
    stack.anvil.mine(2)
    over = tap.wait_for(invoice.name, "invoice.overpaid")[-1]
    assert over.invoice.state == invoice_pb2.INVOICE_STATE_OVERPAID
    assert invoice_pb2.INVOICE_FLAG_PAID_OVER in flags(over)
    assert int(over.invoice.amount_received) - int(invoice.amount_due) == 1_000_000


def test_a_second_full_payment_is_flagged_duplicate(stack: LocalStack, invoices, tap) -> None:
    invoice = create(stack, invoices, tap.parent, "dup")
    pay(stack, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.mine(2)
    tap.wait_for(invoice.name, "invoice.paid")
    pay(stack, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.mine(2)
    dup = tap.wait_for(invoice.name, "invoice.overpaid")[-1]
    assert {invoice_pb2.INVOICE_FLAG_DUPLICATE, invoice_pb2.INVOICE_FLAG_PAID_OVER} <= flags(dup)


def test_a_reverted_transfer_never_counts(stack: LocalStack, invoices, tap) -> None:
    invoice = create(stack, invoices, tap.parent, "reverted")
    broke = stack.anvil.accounts()[5]  # holds no tokens: the transfer reverts (status 0)
    tx = stack.token.transfer(broke, invoice.deposit_address, int(invoice.amount_due), gas=100_000)
    assert int(stack.anvil.rpc.wait_receipt(tx)["status"], 16) == 0
    stack.anvil.mine(3)
    got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert got.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT and not got.payments


def test_native_coin_to_a_token_invoice_is_wrong_asset(stack: LocalStack, invoices, tap) -> None:
    invoice = create(stack, invoices, tap.parent, "wrong")
    tx = stack.anvil.rpc(
        "eth_sendTransaction",
        {"from": stack.customer, "to": invoice.deposit_address, "value": hex(10**18)},
    )
    stack.anvil.rpc.wait_receipt(tx)
    flagged = tap.wait_for(invoice.name, "invoice.flagged")[-1]
    assert flags(flagged) == {invoice_pb2.INVOICE_FLAG_WRONG_ASSET}
    assert flagged.invoice.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT
    assert flagged.invoice.amount_pending == "0" and flagged.invoice.amount_received == "0"
    [payment] = flagged.invoice.payments
    assert payment.asset == f"{stack.chain}/slip44:60" and payment.amount == str(10**18)


def _short_lived(
    stack: LocalStack, invoices, parent: str, order: str, ttl_s: int
) -> invoice_pb2.Invoice:
    return invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id=order,
            asset=stack.token_asset,
            ttl_seconds=ttl_s,
            price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
        )
    ).invoice


def test_short_at_expiry_is_underpaid_and_a_late_top_up_is_paid_late(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = _short_lived(stack, invoices, tap.parent, "short", ttl_s=3)
    pay(stack, invoice.deposit_address, int(invoice.amount_due) // 2)
    stack.anvil.mine(2)
    under = tap.wait_for(invoice.name, "invoice.underpaid", timeout_s=15)[-1]
    assert under.invoice.state == invoice_pb2.INVOICE_STATE_UNDERPAID
    assert invoice_pb2.INVOICE_FLAG_PAID_PARTIAL in flags(under)
    pay(stack, invoice.deposit_address, int(invoice.amount_due) - int(invoice.amount_due) // 2)
    stack.anvil.mine(2)
    late = tap.wait_for(invoice.name, "invoice.paid_late")[-1]
    assert late.invoice.state == invoice_pb2.INVOICE_STATE_PAID
    assert invoice_pb2.INVOICE_FLAG_PAID_LATE in flags(late)


def test_funds_after_expiry_are_credited_and_flagged_paid_late(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = _short_lived(stack, invoices, tap.parent, "late", ttl_s=1)
    tap.wait_for(invoice.name, "invoice.expired", timeout_s=10)
    pay(stack, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.mine(2)
    seen = tap.wait_for(invoice.name, "invoice.paid_late")
    assert [e.type for e in seen] == ["invoice.detected", "invoice.confirming", "invoice.paid_late"]
    assert seen[-1].invoice.amount_received == invoice.amount_due
