"""A payment end to end: invoice → on-chain token transfer → paid, through the
signer, EVM adapter and core as separate processes."""

from __future__ import annotations

import pytest

from core.chain.hd import DepositAddresses
from kassa.core.v1 import invoice_pb2
from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.fullstack import LocalStack
from tests.support.invoices import create, payments_rows


def test_deposit_addresses_come_from_the_signers_xpub(stack: LocalStack, invoices, tap) -> None:
    with stack.signer_channel() as channel:
        hd = (
            signer_pb2_grpc.SignerServiceStub(channel)
            .GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hd"))
            .key
        )
    invoice = create(stack, invoices, tap.parent, "addr-1")
    derived = DepositAddresses(hd.xpub)
    assert invoice.deposit_address in {derived.address(i) for i in range(100)}


def test_token_payment_goes_created_detected_confirming_paid(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "order-1")
    assert [e.type for e in tap.wait_for(invoice.name, "invoice.created")] == ["invoice.created"]
    assert invoice.amount_due == "25000000"

    tx = stack.token.transfer(stack.customer, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.rpc.wait_receipt(tx)  # automine: the payment is in a block now
    seen = tap.wait_for(invoice.name, "invoice.confirming")
    assert [e.type for e in seen] == ["invoice.detected", "invoice.confirming"]
    assert seen[-1].invoice.amount_pending == "25000000"
    assert seen[-1].invoice.amount_received == "0"

    stack.anvil.mine(1)  # 2 confirmations: still below 3
    with pytest.raises(TimeoutError):
        tap.wait_for(invoice.name, "invoice.paid", timeout_s=1.5)
    stack.anvil.mine(1)
    paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
    assert paid.invoice.state == invoice_pb2.INVOICE_STATE_PAID
    assert paid.invoice.amount_received == "25000000"

    fetched = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert [(p.tx_hash, p.amount, p.status) for p in fetched.payments] == [
        (tx, "25000000", invoice_pb2.PAYMENT_STATUS_CONFIRMED)
    ]
    assert fetched.payments[0].confirmations >= 3


def test_a_transfer_to_another_address_pays_nothing(stack: LocalStack, invoices, tap) -> None:
    invoice = create(stack, invoices, tap.parent, "order-2")
    stack.anvil.rpc.wait_receipt(stack.token.transfer(stack.customer, stack.treasury, 25_000_000))
    stack.anvil.mine(3)
    with pytest.raises(TimeoutError):
        tap.wait_for(invoice.name, "invoice.detected", timeout_s=1.5)


def test_core_killed_during_confirmations_still_pays_exactly_once(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "order-crash")
    tx = stack.token.transfer(stack.customer, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.rpc.wait_receipt(tx)
    tap.wait_for(invoice.name, "invoice.confirming")

    stack.processes["core"].kill()
    stack.anvil.mine(2)  # the confirmations land while the core is down
    stack.start_core()

    paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
    assert paid.invoice.amount_received == invoice.amount_due
    # Replayed blocks after the restart must not credit or announce twice.
    stack.anvil.mine(3)
    later = [e for e in tap.drain(1.5) if e.invoice.name == invoice.name]
    assert later == []
    rows = payments_rows(stack.dsn, invoice.name.rsplit("/", 1)[1])
    assert [(r["tx_hash"], int(r["amount"]), r["status"]) for r in rows] == [
        (tx, int(invoice.amount_due), "confirmed")
    ]
    fetched = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert fetched.state == invoice_pb2.INVOICE_STATE_PAID
    assert fetched.amount_received == invoice.amount_due
