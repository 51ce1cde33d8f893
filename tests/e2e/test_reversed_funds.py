"""Reorgs that take back money already handed on, end to end against anvil
and PostgreSQL through the public API (issue 19):

- a payment whose excess was refunded is reorged out while the refund stays:
  the settlement's reversal books what was refunded to the merchant's
  receivable — the ledger refuses nothing, the chain follower keeps running,
  the invoice announces invoice.funds_owed and the exception queue shows the
  amount owed — and when the payment comes back the receivable is paid back
  and the entry closes;
- the same for funds already paid out of the merchant's available balance;
- a refund whose transaction is reorged out and then dropped (its nonce taken
  by another transaction) stops counting on its invoice: the invoice is paid
  again, announces invoice.refund_reversed, the refund fails, and the amount
  is refundable (and refunded) again.

`kassactl ledger check` passes after each. The chain of this module is final
12 blocks deep, so confirmed refunds can still be reorged out."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kassa.core.v1 import exception_pb2, exception_pb2_grpc, invoice_pb2, payout_pb2
from localstack.fullstack import LocalStack
from tests.support.events import EventTap
from tests.support.grpc_errors import rich
from tests.support.payouts import fresh_address, hot_nonce, ledger_check, paid_invoice, wait_payout

FINALITY_DEPTH = 12
CONFIRMED = {payout_pb2.PAYOUT_STATE_CONFIRMED}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    local = LocalStack(
        Path(tmp_path_factory.mktemp("reversed-funds")),
        block_time_s=None,
        postgres=postgres,
        core_options={"chain_extra": {"finality_depth": FINALITY_DEPTH}},  # type: ignore[dict-item]
    )
    local.start_all()
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def _block_of(stack: LocalStack, tx_hash: str) -> int:
    receipt = stack.anvil.rpc("eth_getTransactionReceipt", tx_hash)
    assert receipt is not None, tx_hash
    return int(receipt["blockNumber"], 16)


def _get(invoices, name: str) -> invoice_pb2.Invoice:
    return invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=name)).invoice


def _owed(stack: LocalStack, invoice_name: str, state: int) -> list[exception_pb2.ExceptionEntry]:
    core = stack.core_setup()
    with core.channel(core.admin_token()) as channel:
        queue = exception_pb2_grpc.ExceptionServiceStub(channel)
        listed = queue.ListExceptions(
            exception_pb2.ListExceptionsRequest(state=state, page_size=100)
        ).exceptions
    return [e for e in listed if e.kind == "reversed_funds_owed" and e.resource == invoice_name]


def _ledger_ok(stack: LocalStack) -> None:
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def _until(what: str, ok, timeout_s: float = 30.0, mine: LocalStack | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        got = ok()
        if got:
            return got
        assert time.monotonic() < deadline, what
        if mine is not None:
            mine.anvil.mine(1)
        time.sleep(0.25)


def _reorg_out_keeping(stack: LocalStack, payment_tx: str, keep: list[str]) -> None:
    """Replaces the blocks from the payment's on; the `keep` transactions
    (signed by Kassa's hot key) are mined again, the payment is not."""
    depth = stack.anvil.head() - _block_of(stack, payment_tx) + 1
    raws = [str(stack.anvil.rpc("eth_getRawTransactionByHash", tx)) for tx in keep]
    stack.anvil.rpc("anvil_reorg", depth, [[raw, 0] for raw in raws])
    assert stack.anvil.rpc("eth_getTransactionReceipt", payment_tx) is None


def _bring_back(stack: LocalStack, raw: str) -> None:
    stack.anvil.rpc.wait_receipt(str(stack.anvil.rpc("eth_sendRawTransaction", raw)))


def test_a_reorg_removing_a_payment_whose_excess_was_refunded_books_it_as_owed(
    stack: LocalStack, account, tap: EventTap
) -> None:
    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent, pay_extra=5_000_000)  # 30 for 25 due
    payment_tx = invoice.payments[0].tx_hash
    payment_raw = str(stack.anvil.rpc("eth_getRawTransactionByHash", payment_tx))
    customer = fresh_address()
    refund = payouts.CreateRefund(
        payout_pb2.CreateRefundRequest(
            invoice=invoice.name, destination=customer, amount="5000000", reference="excess"
        )
    ).payout
    refund = wait_payout(stack, payouts, refund.name, CONFIRMED)
    assert stack.token.balance_of(customer) == 5_000_000

    # The payment goes, the refund stays: the customer keeps the 5 refunded.
    _reorg_out_keeping(stack, payment_tx, [refund.tx_hash])
    assert stack.token.balance_of(customer) == 5_000_000
    owed = tap.wait_for(invoice.name, "invoice.funds_owed", timeout_s=30)
    assert "payment.reorged" in [e.type for e in owed]
    moved_back = _get(invoices, invoice.name)
    assert moved_back.amount_received == "0" and moved_back.amount_refunded == "5000000"
    assert moved_back.amount_refundable == "0"
    entries = _owed(stack, invoice.name, exception_pb2.EXCEPTION_STATE_OPEN)
    assert [(e.amount, e.state) for e in entries] == [
        ("5000000", exception_pb2.EXCEPTION_STATE_OPEN)
    ]
    assert "refunded or paid out" in entries[0].detail
    _ledger_ok(stack)

    # The follower kept running: the payment, sent again, is applied and the
    # receivable paid back first — refunds payable does not get the 5 twice.
    _bring_back(stack, payment_raw)
    again = _until(
        "the payment was never credited again",
        lambda: (
            (got := _get(invoices, invoice.name)).state == invoice_pb2.INVOICE_STATE_OVERPAID
            and got
        ),
        mine=stack,
    )
    assert again.amount_received == str(int(invoice.amount_due) + 5_000_000)
    assert again.amount_refunded == "5000000" and again.amount_refundable == str(
        int(invoice.amount_due)
    )
    assert not _owed(stack, invoice.name, exception_pb2.EXCEPTION_STATE_OPEN)
    closed = _owed(stack, invoice.name, exception_pb2.EXCEPTION_STATE_RESOLVED)
    assert [(e.amount, e.resolve_actor) for e in closed] == [("0", "kassa")]
    _ledger_ok(stack)
    # Nothing more of the excess is refundable: it went to the customer once.
    with pytest.raises(grpc.RpcError) as refused:
        payouts.CreateRefund(
            payout_pb2.CreateRefundRequest(
                invoice=invoice.name,
                destination=fresh_address(),
                amount=str(int(invoice.amount_due) + 1),
                reference="too-much",
            )
        )
    error = rich(refused.value)
    assert error.reason == "REFUND_EXCEEDS_RECEIVED" and error.metadata["refundable"] == str(
        int(invoice.amount_due)
    )


def test_a_reorg_removing_a_payment_already_paid_out_books_it_as_owed(
    stack: LocalStack, account, tap: EventTap
) -> None:
    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent)
    payment_tx = invoice.payments[0].tx_hash
    to = fresh_address()
    payout = payouts.CreatePayout(
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=stack.token_asset, destination=to, amount=invoice.amount_due
            ),
            request_id=f"all-{secrets.token_hex(4)}",
        )
    ).payout
    payout = wait_payout(stack, payouts, payout.name, CONFIRMED)

    _reorg_out_keeping(stack, payment_tx, [payout.tx_hash])
    tap.wait_for(invoice.name, "invoice.funds_owed", timeout_s=30)
    entries = _owed(stack, invoice.name, exception_pb2.EXCEPTION_STATE_OPEN)
    assert [e.amount for e in entries] == [invoice.amount_due]
    _ledger_ok(stack)
    # The follower still follows: a new invoice is paid and settled.
    later = paid_invoice(stack, invoices, parent)
    assert later.state == invoice_pb2.INVOICE_STATE_PAID
    _ledger_ok(stack)


def test_a_counted_refund_reorged_out_and_dropped_is_refundable_again(
    stack: LocalStack, account, tap: EventTap
) -> None:
    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent)
    nonce = hot_nonce(stack)
    customer = fresh_address()
    refund = payouts.CreateRefund(
        payout_pb2.CreateRefundRequest(invoice=invoice.name, destination=customer, reference="all")
    ).payout
    refund = wait_payout(stack, payouts, refund.name, CONFIRMED)
    assert refund.nonce == nonce
    assert _get(invoices, invoice.name).state == invoice_pb2.INVOICE_STATE_REFUNDED

    # The refund's block goes, and its nonce is spent at once by another
    # transaction of the hot key: the stored refund can never land.
    depth = stack.anvil.head() - _block_of(stack, refund.tx_hash) + 1
    stack.anvil.rpc("anvil_reorg", depth, [])
    stack.anvil.rpc("anvil_impersonateAccount", stack.hot_address)
    try:
        taken = stack.anvil.rpc(
            "eth_sendTransaction", {"from": stack.hot_address, "to": stack.hot_address}
        )
        stack.anvil.rpc.wait_receipt(str(taken))
    finally:
        stack.anvil.rpc("anvil_stopImpersonatingAccount", stack.hot_address)
    assert hot_nonce(stack) == nonce + 1 and stack.token.balance_of(customer) == 0

    reversed_ = tap.wait_for(invoice.name, "invoice.refund_reversed", timeout_s=30)[-1]
    assert reversed_.invoice.state == invoice_pb2.INVOICE_STATE_PAID
    assert reversed_.invoice.amount_refunded == "0"
    failed = wait_payout(stack, payouts, refund.name, {payout_pb2.PAYOUT_STATE_FAILED}, 60)
    assert failed.failure_reason == "NONCE_CONSUMED"
    got = _get(invoices, invoice.name)
    assert got.state == invoice_pb2.INVOICE_STATE_PAID
    assert got.amount_refunded == "0" and got.amount_refundable == invoice.amount_due
    _ledger_ok(stack)

    # Refundable again, and refunded once.
    again = payouts.CreateRefund(
        payout_pb2.CreateRefundRequest(invoice=invoice.name, destination=customer, reference="2nd")
    ).payout
    assert again.amount == invoice.amount_due
    wait_payout(stack, payouts, again.name, CONFIRMED)
    assert stack.token.balance_of(customer) == int(invoice.amount_due)
    assert _get(invoices, invoice.name).state == invoice_pb2.INVOICE_STATE_REFUNDED
    _ledger_ok(stack)
