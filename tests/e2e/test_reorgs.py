"""Reorgs made by anvil_reorg move invoices back and forward, and credit
exactly once whatever the depth, also across a core restart."""

from __future__ import annotations

import pytest

from kassa.core.v1 import invoice_pb2
from localstack.fullstack import LocalStack
from tests.support.invoices import create, payments_rows


def pay(stack: LocalStack, invoice: invoice_pb2.Invoice) -> tuple[str, str]:
    """Pays in full; returns (tx hash, raw signed tx) for re-including it later."""
    tx = stack.token.transfer(stack.customer, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.rpc.wait_receipt(tx)
    return tx, str(stack.anvil.rpc("eth_getRawTransactionByHash", tx))


def final(invoices, invoice: invoice_pb2.Invoice) -> invoice_pb2.Invoice:
    return invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice


def assert_credited_once(stack: LocalStack, invoice: invoice_pb2.Invoice, tx: str) -> None:
    rows = payments_rows(stack.dsn, invoice.name.rsplit("/", 1)[1])
    assert [(r["tx_hash"], int(r["amount"]), r["status"]) for r in rows] == [
        (tx, int(invoice.amount_due), "confirmed")
    ]


def test_reorg_of_the_payment_block_moves_back_and_reinclusion_moves_forward(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "reorg-1")
    tx, raw = pay(stack, invoice)
    tap.wait_for(invoice.name, "invoice.confirming")

    stack.anvil.rpc("anvil_reorg", 1, [])  # the payment's block is replaced by an empty one
    back = tap.wait_for(invoice.name, "payment.reorged")[-1]
    assert back.invoice.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT
    assert back.invoice.amount_pending == "0"
    assert [p.status for p in back.invoice.payments] == [invoice_pb2.PAYMENT_STATUS_REORGED]

    stack.anvil.rpc("anvil_reorg", 1, [[raw, 0]])  # the same transaction comes back
    again = tap.wait_for(invoice.name, "invoice.confirming")
    assert [e.type for e in again] == ["invoice.detected", "invoice.confirming"]
    stack.anvil.mine(2)
    paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
    assert paid.invoice.amount_received == invoice.amount_due
    assert_credited_once(stack, invoice, tx)


@pytest.mark.parametrize("depth", [2, 6])
def test_reorg_deeper_than_the_threshold_unpays_and_repays_exactly_once(
    stack: LocalStack, invoices, tap, depth: int
) -> None:
    invoice = create(stack, invoices, tap.parent, f"deep-{depth}")
    tx, raw = pay(stack, invoice)
    stack.anvil.mine(2)
    tap.wait_for(invoice.name, "invoice.paid")  # 3 confirmations
    if depth > 3:
        stack.anvil.mine(depth - 3)

    # Replace `depth` blocks (payment included) with new ones carrying it at the start.
    stack.anvil.rpc("anvil_reorg", depth, [[raw, 0]])
    seen = tap.wait_for(invoice.name, "invoice.paid")
    assert seen[0].type == "payment.reorged"
    assert seen[-1].invoice.state == invoice_pb2.INVOICE_STATE_PAID
    assert final(invoices, invoice).amount_received == invoice.amount_due
    assert_credited_once(stack, invoice, tx)


def test_reorg_that_drops_the_payment_for_good_leaves_nothing_credited(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "dropped")
    pay(stack, invoice)
    stack.anvil.mine(3)
    tap.wait_for(invoice.name, "invoice.paid")
    stack.anvil.rpc("anvil_reorg", 5, [])
    back = tap.wait_for(invoice.name, "payment.reorged")[-1]
    assert back.invoice.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT
    assert (back.invoice.amount_received, back.invoice.amount_pending) == ("0", "0")
    assert final(invoices, invoice).state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT


def test_reorg_while_the_core_is_down_is_undone_after_restart(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "down")
    tx, raw = pay(stack, invoice)
    stack.anvil.mine(2)
    tap.wait_for(invoice.name, "invoice.paid")

    stack.processes["core"].kill()
    # Deeper than the threshold, payment re-included two blocks later.
    stack.anvil.rpc("anvil_reorg", 4, [[raw, 2]])
    stack.start_core()

    seen = tap.wait_for(invoice.name, "invoice.confirming")  # 2 confirmations in the new chain
    assert [e.type for e in seen] == ["payment.reorged", "invoice.detected", "invoice.confirming"]
    stack.anvil.mine(1)
    tap.wait_for(invoice.name, "invoice.paid")
    assert final(invoices, invoice).state == invoice_pb2.INVOICE_STATE_PAID
    assert_credited_once(stack, invoice, tx)
