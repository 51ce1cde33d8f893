"""Operating the stack: every process serves /metrics, and a payment and a
payout move the right series (scraped over HTTP from the real processes, as
Prometheus would); the core's health and CreateInvoice tell the truth when
the chain's adapter goes away, and recover when it is back.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.telemetry.logs import SCHEMA_KEYS
from kassa.core.v1 import invoice_pb2, payout_pb2
from localstack.fullstack import LocalStack
from tests.support.grpc_errors import rich
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
    postings_before = value(before, "kassa_ledger_postings_total")
    applied_before = value(before, "kassa_chain_block_apply_seconds_count", chain=stack.chain)

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
        lambda s: (
            value(s, "kassa_payouts", kind="payout", state="confirmed") >= 1
            and sum(value(s, "kassa_invoices", state=st) for st in ("paid", "overpaid")) >= 1
        ),
        what="the confirmed payout and the paid invoice",
    )
    # The payment and the payout posted to the ledger; the blocks carrying them were timed.
    assert value(core, "kassa_ledger_postings_total") >= postings_before + 2
    assert value(core, "kassa_chain_block_apply_seconds_count", chain=stack.chain) > (
        applied_before
    )
    assert value(core, "kassa_chain_lag_seconds", chain=stack.chain) >= 0
    assert (
        "kassa_payouts_oldest_age_seconds",
        frozenset({("kind", "payout"), ("state", "confirmed")}),
    ) in core
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
    assert value(signer, "kassa_signer_audit_append_seconds_count") >= 1
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


def _health(stack: LocalStack, service: str) -> int:
    with stack.core_setup().bare_channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


def _wait_health(stack: LocalStack, service: str, wanted: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := _health(stack, service)) != wanted:
        assert time.monotonic() < deadline, f"{service!r} stayed {got}, wanted {wanted}"
        time.sleep(0.2)


def _create(invoices, parent: str, asset: str, order: str) -> invoice_pb2.Invoice:
    return invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id=order,
            asset=asset,
            price=invoice_pb2.FiatAmount(amount="5.00", currency="USD"),
        )
    ).invoice


def test_a_stopped_adapter_turns_health_and_invoices_away_until_it_is_back(
    stack: LocalStack, invoices, merchant
) -> None:
    parent = merchant[0]
    chain_entry = f"kassa.chain/{stack.chain}"
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert _health(stack, "") == serving
    assert _health(stack, chain_entry) == serving
    _create(invoices, parent, stack.token_asset, "before")
    log = stack.run_dir / "core.log"
    lines_before = len(log.read_text().splitlines())

    stack.primary.adapter.kill()
    _wait_health(stack, "", not_serving)
    assert _health(stack, chain_entry) == not_serving
    assert _health(stack, INVOICES) == serving  # the database still answers
    with pytest.raises(grpc.RpcError) as refused:
        _create(invoices, parent, stack.token_asset, "during")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich(refused.value).reason == "CHAIN_UNAVAILABLE"
    core = scrape(stack.core_setup().metrics_port)
    assert value(core, "kassa_chain_streaming", chain=stack.chain) == 0
    lag_at_stop_s = value(core, "kassa_chain_lag_seconds", chain=stack.chain)
    # Several reconnect attempts (1, 2, 4 s apart): a line when the stream ends and at most
    # one more when the reason changes (ended -> refused), not one per attempt.
    time.sleep(8)
    # No block applied meanwhile: the lag in seconds keeps growing.
    lag_later_s = value(
        scrape(stack.core_setup().metrics_port), "kassa_chain_lag_seconds", chain=stack.chain
    )
    assert lag_later_s >= lag_at_stop_s + 5, (lag_at_stop_s, lag_later_s)
    during = log.read_text().splitlines()[lines_before:]
    assert 1 <= sum('"block stream ended"' in line for line in during) <= 2, during
    assert (
        value(
            scrape(stack.core_setup().metrics_port),
            "kassa_chain_stream_ends_total",
            chain=stack.chain,
        )
        >= 3
    )

    stack.start_adapter()
    _wait_health(stack, "", serving)
    assert _health(stack, chain_entry) == serving
    again = _create(invoices, parent, stack.token_asset, "after")
    assert again.name
    after = log.read_text().splitlines()[lines_before:]
    assert sum('"block stream resumed"' in line for line in after) == 1


def _lines(path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_three_processes_log_one_schema_and_share_request_ids(
    stack: LocalStack, invoices, merchant
) -> None:
    sent = "client-" + secrets.token_hex(6)
    invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=merchant[0],
            merchant_order_id="with-an-id",
            asset=stack.token_asset,
            price=invoice_pb2.FiatAmount(amount="5.00", currency="USD"),
        ),
        metadata=[("x-request-id", sent)],
    )
    time.sleep(0.5)  # the access line is written as the call ends
    logs = {
        "kassa-core": stack.run_dir / "core.log",
        "kassa-signer": stack.run_dir / "signer.log",
        "kassa-evm": stack.run_dir / f"evm-{stack.primary.chain_id}.log",
    }
    parsed = {process: _lines(path) for process, path in logs.items()}
    for process, lines in parsed.items():
        assert lines, process
        for line in lines:
            assert list(line)[:6] == list(SCHEMA_KEYS), line
            assert line["process"] == process, line
            assert line["level"] in {"debug", "info", "warning", "error", "critical"}, line
            ts = datetime.fromisoformat(str(line["ts"]))
            assert ts.utcoffset() == timedelta(0), line
            assert isinstance(line["msg"], str) and line["msg"], line
            assert line["request_id"] is None or isinstance(line["request_id"], str), line
            if line["logger"] == "kassa.access":
                assert line["msg"] == "rpc"
                assert str(line["method"]).startswith("/kassa.") or "grpc" in str(line["method"])
                assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
                assert line["code"] in grpc.StatusCode.__members__, line
                assert line["request_id"], line

    core_access = [line for line in parsed["kassa-core"] if line["logger"] == "kassa.access"]
    mine = [line for line in core_access if line["request_id"] == sent]
    assert [(line["method"], line["code"]) for line in mine] == [
        (f"/{INVOICES}/CreateInvoice", "OK")
    ]
    # core -> signer: the payout step's id is on the core's line and the signer's access line.
    signed = [line for line in parsed["kassa-core"] if line["msg"] == "payout signed"]
    assert signed
    signer_ids = {
        line["request_id"]
        for line in parsed["kassa-signer"]
        if line["logger"] == "kassa.access" and str(line["method"]).endswith("/Sign")
    }
    assert {line["request_id"] for line in signed} <= signer_ids
    # core -> adapter: the payout worker's adapter calls carry the core's ids too.
    core_ids = {line["request_id"] for line in parsed["kassa-core"] if line["request_id"]}
    adapter_ids = {
        line["request_id"] for line in parsed["kassa-evm"] if line["logger"] == "kassa.access"
    }
    assert adapter_ids & core_ids
