"""Zero-confirmation settlement from the mempool, end to end.

The chain of this module allows zero-conf for invoices up to 50 USD and needs
3 confirmations above; anvil's automine is off, so every transaction waits in
the mempool until the test mines it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kassa.core.v1 import invoice_pb2
from localstack.fullstack import LocalStack
from tests.support.invoices import payments_rows

PENDING_TTL_S = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    local = LocalStack(
        Path(tmp_path_factory.mktemp("zero-conf")),
        block_time_s=None,
        postgres=postgres,
        core_options={
            "chain_extra": {  # type: ignore[dict-item]
                "tiers": [{"up_to": "50.00", "currency": "USD", "confirmations": 0}],
                "pending_ttl_s": PENDING_TTL_S,
            }
        },
    )
    local.start_all()
    local.anvil.rpc("evm_setAutomine", False)
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def create(
    stack: LocalStack, invoices, parent: str, order: str, usd: str, asset: str | None = None
) -> invoice_pb2.Invoice:
    return invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id=order,
            asset=asset or stack.token_asset,
            price=invoice_pb2.FiatAmount(amount=usd, currency="USD"),
        )
    ).invoice


def invoice_id(invoice: invoice_pb2.Invoice) -> str:
    return invoice.name.rsplit("/", 1)[-1]


def in_mempool(stack: LocalStack, tx: str) -> bool:
    return stack.anvil.rpc("eth_getTransactionReceipt", tx) is None


def test_a_small_invoice_is_paid_from_the_mempool_and_mining_does_not_double_count(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "small", "25.00")
    due = int(invoice.amount_due)
    tx = stack.token.transfer(stack.customer, invoice.deposit_address, due)
    paid = tap.wait_for(invoice.name, "invoice.paid")
    assert in_mempool(stack, tx)
    assert [e.type for e in paid][-3:] == ["invoice.detected", "invoice.confirming", "invoice.paid"]
    assert paid[-1].invoice.amount_received == str(due)
    [row] = payments_rows(stack.dsn, invoice_id(invoice))
    assert (row["status"], row["block_height"], row["transfer_index"]) == ("confirmed", None, 1)
    first_seen = row["first_seen_time"]

    stack.anvil.mine()
    deadline = time.monotonic() + 15
    while (row := payments_rows(stack.dsn, invoice_id(invoice))[0])["block_height"] is None:
        assert time.monotonic() < deadline, "the mined block never reached the payment"
        time.sleep(0.1)
    rows = payments_rows(stack.dsn, invoice_id(invoice))
    assert len(rows) == 1  # the block took the sighting over: one row per transfer
    assert (rows[0]["status"], rows[0]["first_seen_time"]) == ("confirmed", first_seen)
    later = [e.type for e in tap.drain(1.0) if e.invoice.name == invoice.name]
    assert later == [], "mining moved a paid invoice"
    final = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert final.state == invoice_pb2.INVOICE_STATE_PAID
    assert final.amount_received == str(due)


def test_a_large_invoice_is_only_detected_from_the_mempool(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "large", "100.00")
    due = int(invoice.amount_due)
    tx = stack.token.transfer(stack.customer, invoice.deposit_address, due)
    detected = tap.wait_for(invoice.name, "invoice.detected")[-1]
    assert detected.invoice.state == invoice_pb2.INVOICE_STATE_DETECTED
    assert in_mempool(stack, tx)
    [row] = payments_rows(stack.dsn, invoice_id(invoice))
    assert (row["status"], row["block_height"]) == ("pending", None)
    assert not [
        e for e in tap.drain(1.0) if e.invoice.name == invoice.name and e.type != "invoice.detected"
    ]

    stack.anvil.mine()
    tap.wait_for(invoice.name, "invoice.confirming")
    stack.anvil.mine(2)
    paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
    assert paid.invoice.amount_received == str(due)
    [row] = payments_rows(stack.dsn, invoice_id(invoice))
    assert row["status"] == "confirmed" and row["block_height"] is not None


def test_a_dropped_sighting_expires_and_the_invoice_waits_again(
    stack: LocalStack, invoices, tap
) -> None:
    invoice = create(stack, invoices, tap.parent, "dropped", "10.00", stack.primary.native_asset)
    due = int(invoice.amount_due)
    # A sender of its own: dropping leaves a nonce gap nobody else trips over.
    sender = stack.anvil.accounts()[7]
    tx = str(
        stack.anvil.rpc(
            "eth_sendTransaction",
            {"from": sender, "to": invoice.deposit_address, "value": hex(due)},
        )
    )
    tap.wait_for(invoice.name, "invoice.paid")
    stack.anvil.rpc("anvil_dropTransaction", tx)
    back = tap.wait_for(invoice.name, "payment.reorged", timeout_s=PENDING_TTL_S + 20)[-1]
    assert back.invoice.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT
    assert back.invoice.amount_received == "0"
    [row] = payments_rows(stack.dsn, invoice_id(invoice))
    assert (row["status"], row["block_height"]) == ("reorged", None)  # kept as evidence
    stack.anvil.mine()  # the transaction is gone: nothing comes back
    assert not [
        e for e in tap.drain(1.0) if e.invoice.name == invoice.name and e.type == "invoice.paid"
    ]
