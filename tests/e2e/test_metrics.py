"""Every process serves /metrics, and a payment and a payout move the right series.

Scraped over HTTP from the real processes of the stack (core, signer, EVM
adapter), as Prometheus would.
"""

from __future__ import annotations

import grpc
import pytest

from kassa.core.v1 import invoice_pb2, payout_pb2
from localstack.fullstack import LocalStack
from tests.support.metrics import scrape, scrape_text, value, wait_for
from tests.support.payouts import fresh_address, paid_invoice, wait_payout

INVOICES = "kassa.core.v1.InvoiceService"
FINAL = {payout_pb2.PAYOUT_STATE_CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED}


def test_a_payment_and_a_payout_move_the_metrics_of_all_three(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    core_port = stack.core_setup().metrics_port
    signer_port = stack.metrics_ports["signer"]
    adapter_port = stack.metrics_ports[f"evm-{stack.primary.chain_id}"]
    before = scrape(core_port)
    created_before = value(
        before, "kassa_grpc_requests_total", service=INVOICES, method="CreateInvoice", code="OK"
    )

    paid_invoice(stack, invoices, parent)
    with pytest.raises(grpc.RpcError) as refused:
        invoices.CreateInvoice(invoice_pb2.CreateInvoiceRequest(parent=parent, asset="nope"))
    refused_code = refused.value.code().name
    payout = payouts.CreatePayout(
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=stack.token_asset, destination=fresh_address(), amount="1000000"
            ),
            request_id="metrics-1",
        )
    ).payout
    assert wait_payout(stack, payouts, payout.name, FINAL).state == (
        payout_pb2.PAYOUT_STATE_CONFIRMED
    )

    chain = stack.chain
    core = wait_for(
        core_port,
        lambda s: value(s, "kassa_payouts", kind="payout", state="confirmed") >= 1,
        what="the confirmed payout",
    )
    assert (
        value(
            core, "kassa_grpc_requests_total", service=INVOICES, method="CreateInvoice", code="OK"
        )
        == created_before + 1
    )
    assert (
        value(
            core,
            "kassa_grpc_requests_total",
            service=INVOICES,
            method="CreateInvoice",
            code=refused_code,
        )
        >= 1
    )
    assert value(core, "kassa_grpc_request_duration_seconds_count", service=INVOICES) >= 2
    assert value(core, "kassa_core_database_up") == 1
    assert value(core, "kassa_chain_streaming", chain=chain) == 1
    applied = value(core, "kassa_chain_applied_height", chain=chain)
    assert applied > 0
    assert value(core, "kassa_chain_head_height", chain=chain) >= applied
    assert value(core, "kassa_chain_lag_blocks", chain=chain) >= 0
    assert value(core, "kassa_chain_blocks_applied_total", chain=chain) >= 1
    assert value(core, "kassa_outbox_head_sequence") >= 1
    assert ("kassa_webhook_deliveries", frozenset({("status", "pending")})) in core

    signer = scrape(signer_port)
    assert value(signer, "kassa_signer_decisions_total", reason="SIGNED") >= 1
    assert value(signer, "kassa_signer_hsm_sign_seconds_count") >= 1
    assert (
        value(
            signer,
            "kassa_grpc_requests_total",
            service="kassa.signer.v1.SignerService",
            method="Sign",
            code="OK",
        )
        >= 1
    )
    # The attacker reading the signer's metrics port learns counts, not keys or policy.
    text = scrape_text(signer_port).lower()
    for secret in ("hot-1", stack.hot_address.lower(), stack.hot_address.lower()[2:], "policy"):
        assert secret not in text, secret

    adapter = scrape(adapter_port)
    assert value(adapter, "kassa_evm_node_up") == 1
    assert value(adapter, "kassa_evm_node_connects_total") >= 1
    assert value(adapter, "kassa_evm_head_height") >= applied
    assert (
        value(adapter, "kassa_grpc_requests_total", service="kassa.chain.v1.ChainAdapterService")
        >= 1
    )
