"""Shared by the payout, refund and approval end-to-end tests."""

from __future__ import annotations

import secrets
import subprocess
import time

from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc, payout_pb2, payout_pb2_grpc
from localstack.fullstack import LocalStack
from localstack.stack import MERCHANT_SCOPES
from tests.support import kassactl

PAYOUT_SCOPES = (*MERCHANT_SCOPES, "payouts:read", "payouts:write", "payouts:approve")


def fresh_address() -> str:
    return "0x" + secrets.token_hex(20)


def paid_invoice(
    stack: LocalStack,
    invoices: invoice_pb2_grpc.InvoiceServiceStub,
    parent: str,
    price_usd: str = "25.00",
    pay_extra: int = 0,
) -> invoice_pb2.Invoice:
    """An invoice of the test token, paid (plus `pay_extra` base units) and confirmed."""
    invoice = invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id=f"order-{secrets.token_hex(4)}",
            asset=stack.token_asset,
            price=invoice_pb2.FiatAmount(amount=price_usd, currency="USD"),
        )
    ).invoice
    amount = int(invoice.amount_due) + pay_extra
    stack.anvil.rpc.wait_receipt(
        stack.token.transfer(stack.customer, invoice.deposit_address, amount)
    )
    wanted = {invoice_pb2.INVOICE_STATE_PAID, invoice_pb2.INVOICE_STATE_OVERPAID}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stack.anvil.mine(1)
        got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
        if got.state in wanted:
            return got
        time.sleep(0.2)
    raise TimeoutError(f"{invoice.name} not paid")


def wait_payout(
    stack: LocalStack,
    payouts: payout_pb2_grpc.PayoutServiceStub,
    name: str,
    states: set[int],
    timeout_s: float = 40.0,
    mine: bool = True,
) -> payout_pb2.Payout:
    """Polls until the payout is in one of `states`, mining a block per poll (automine)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = payouts.GetPayout(payout_pb2.GetPayoutRequest(name=name)).payout
        except Exception:  # the core may be restarting
            last = None
        if last is not None and last.state in states:
            return last
        if mine:
            stack.anvil.mine(1)
        time.sleep(0.25)
    raise TimeoutError(f"{name} never reached {states}; last {last}")


def hot_nonce(stack: LocalStack) -> int:
    return int(stack.anvil.rpc("eth_getTransactionCount", stack.hot_address, "latest"), 16)


def ledger_check(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    return kassactl.ledger_check(stack.dsn, timeout_s=60)
