"""ETH that reaches a deposit address through a contract call (a Safe, an
exchange's batcher) rather than as a transaction's own value.

One stack, two chains: the adapter of chain one reads call traces
(`internal_transfers = "call_tracer"`), the adapter of chain two does not.
With traces, the internal transfer is a payment like any other and is
credited exactly once, across a reorg too. Without them the adapter cannot
see it: the funds are on the deposit address, where the reconciliation of
deposit balances finds them for an operator to attach to their invoice.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.evm.traces import INTERNAL_INDEX_BASE
from kassa.core.v1 import invoice_pb2
from kassa.core.v1.event_pb2 import Event
from localstack.forwarder import Forwarder, deploy
from localstack.fullstack import ChainStack, LocalStack
from tests.support.events import EventTap
from tests.support.invoices import payments_rows

TRACED, UNTRACED = 31337, 31338


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    local = LocalStack(
        Path(tmp_path_factory.mktemp("internal")),
        chain_ids=(TRACED, UNTRACED),
        block_time_s=None,
        postgres=postgres,
        adapter_options={TRACED: {"internal_transfers": "call_tracer"}},
    )
    local.start_all(signer=False)
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


@pytest.fixture(scope="module")
def forwarders(stack: LocalStack) -> dict[int, Forwarder]:
    return {c.chain_id: deploy(c.anvil.rpc, c.treasury) for c in stack.chains}


def _chain(stack: LocalStack, chain_id: int) -> ChainStack:
    return next(c for c in stack.chains if c.chain_id == chain_id)


def _create(invoices, parent: str, chain: ChainStack, order: str) -> invoice_pb2.Invoice:
    return invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id=order,
            asset=chain.native_asset,
            price=invoice_pb2.FiatAmount(amount="30.00", currency="USD"),
        )
    ).invoice


def _rows(stack: LocalStack, invoice: invoice_pb2.Invoice) -> list[tuple[str, int, int, str]]:
    return [
        (r["tx_hash"], r["transfer_index"], int(r["amount"]), r["status"])
        for r in payments_rows(stack.dsn, invoice.name.rsplit("/", 1)[1])
    ]


def _paid_events(tap: EventTap, names: set[str], timeout_s: float = 20.0) -> dict[str, Event]:
    """The invoice.paid event of each invoice named, in one pass over the
    stream (tap.wait_for drops other invoices' events while it waits)."""
    paid: dict[str, Event] = {}
    deadline = time.monotonic() + timeout_s
    while set(paid) != names:
        remaining_s = deadline - time.monotonic()
        assert remaining_s > 0, f"paid: {sorted(paid)} of {sorted(names)}"
        try:
            event = tap.events.get(timeout=remaining_s)
        except queue.Empty:
            continue
        if event.type == "invoice.paid" and event.invoice.name in names:
            paid[event.invoice.name] = event
    return paid


def test_eth_forwarded_by_a_contract_pays_the_invoice_exactly_once(
    stack: LocalStack, forwarders, invoices, tap
) -> None:
    chain = _chain(stack, TRACED)
    invoice = _create(invoices, tap.parent, chain, "forwarded")
    amount = int(invoice.amount_due)
    assert amount == 10**16  # 30 USD at 3000 USD/ETH

    tx = forwarders[TRACED].forward(chain.customer, invoice.deposit_address, amount)
    receipt = chain.anvil.rpc.wait_receipt(tx)
    assert int(receipt["status"], 16) == 1
    assert str(receipt["to"]).lower() == forwarders[TRACED].address  # not the deposit address
    seen = tap.wait_for(invoice.name, "invoice.confirming")
    assert [e.type for e in seen if e.type != "invoice.created"] == [
        "invoice.detected",
        "invoice.confirming",
    ]
    chain.anvil.mine(2)
    paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
    assert paid.invoice.state == invoice_pb2.INVOICE_STATE_PAID
    assert paid.invoice.amount_received == invoice.amount_due

    # Later blocks (and their traces) neither credit nor announce it again.
    chain.anvil.mine(3)
    assert [e for e in tap.drain(1.5) if e.invoice.name == invoice.name] == []
    assert _rows(stack, invoice) == [(tx, INTERNAL_INDEX_BASE, amount, "confirmed")]


def test_one_batch_transaction_pays_two_invoices(
    stack: LocalStack, forwarders, invoices, tap
) -> None:
    chain = _chain(stack, TRACED)
    one = _create(invoices, tap.parent, chain, "batch-1")
    two = _create(invoices, tap.parent, chain, "batch-2")
    tx = forwarders[TRACED].split(
        chain.customer,
        [(one.deposit_address, int(one.amount_due)), (two.deposit_address, int(two.amount_due))],
    )
    chain.anvil.rpc.wait_receipt(tx)
    chain.anvil.mine(2)
    paid = _paid_events(tap, {one.name, two.name})
    for k, invoice in enumerate((one, two)):
        assert paid[invoice.name].invoice.amount_received == invoice.amount_due
        # The same transaction, one distinct index per internal frame.
        assert _rows(stack, invoice) == [
            (tx, INTERNAL_INDEX_BASE + k, int(invoice.amount_due), "confirmed")
        ]


def test_an_internal_payment_that_reverted_pays_nothing(
    stack: LocalStack, forwarders, invoices, tap
) -> None:
    chain = _chain(stack, TRACED)
    invoice = _create(invoices, tap.parent, chain, "reverted-inside")
    tx = forwarders[TRACED].forward_reverted(
        chain.customer, invoice.deposit_address, int(invoice.amount_due)
    )
    receipt = chain.anvil.rpc.wait_receipt(tx)
    assert int(receipt["status"], 16) == 1  # the transaction succeeded, its inner call did not
    chain.anvil.mine(3)
    with pytest.raises(TimeoutError):
        tap.wait_for(invoice.name, "invoice.detected", timeout_s=2.0)
    assert int(chain.anvil.rpc("eth_getBalance", invoice.deposit_address, "latest"), 16) == 0
    assert _rows(stack, invoice) == []


def test_a_reorg_of_an_internal_payment_credits_it_exactly_once(
    stack: LocalStack, forwarders, invoices, tap
) -> None:
    chain = _chain(stack, TRACED)
    invoice = _create(invoices, tap.parent, chain, "reorged-inside")
    tx = forwarders[TRACED].forward(
        chain.customer, invoice.deposit_address, int(invoice.amount_due)
    )
    chain.anvil.rpc.wait_receipt(tx)
    raw = str(chain.anvil.rpc("eth_getRawTransactionByHash", tx))
    tap.wait_for(invoice.name, "invoice.confirming")

    chain.anvil.rpc("anvil_reorg", 1, [])  # its block is replaced by an empty one
    back = tap.wait_for(invoice.name, "payment.reorged")[-1]
    assert back.invoice.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT

    chain.anvil.rpc("anvil_reorg", 1, [[raw, 0]])  # and comes back, re-traced
    chain.anvil.mine(2)
    paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
    assert paid.invoice.amount_received == invoice.amount_due
    assert _rows(stack, invoice) == [
        (tx, INTERNAL_INDEX_BASE, int(invoice.amount_due), "confirmed")
    ]


def test_without_traces_a_forwarded_payment_is_not_seen_but_is_on_the_address(
    stack: LocalStack, forwarders, invoices, tap
) -> None:
    chain = _chain(stack, UNTRACED)
    invoice = _create(invoices, tap.parent, chain, "untraced")
    tx = forwarders[UNTRACED].forward(
        chain.customer, invoice.deposit_address, int(invoice.amount_due)
    )
    chain.anvil.rpc.wait_receipt(tx)
    chain.anvil.mine(3)
    with pytest.raises(TimeoutError):
        tap.wait_for(invoice.name, "invoice.detected", timeout_s=2.0)
    assert _rows(stack, invoice) == []
    # The funds are there: the reconciliation of deposit balances (which
    # compares each deposit address's balance with its recorded payments)
    # is what finds them when tracing is off.
    balance = int(chain.anvil.rpc("eth_getBalance", invoice.deposit_address, "latest"), 16)
    assert balance == int(invoice.amount_due)
