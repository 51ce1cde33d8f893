"""The node the adapter uses is killed and the other node has the same chain: the adapter
goes on from the last block it sent, on the other node, skipping and repeating no height, and
the core credits the payment exactly once — no reorg, no second credit.

Node B is an anvil forked from node A after the payment's block and some confirmations, so
the two agree on every block the adapter has sent; A is SIGKILLed while the invoice is still
confirming; B holds the remaining confirmations. (The diverged case, where the switch is a
reorg, is tests/e2e/test_node_failover.py; each kills its stack's node, so each has a stack.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kassa.core.v1 import invoice_pb2
from localstack.anvil import Anvil
from localstack.fullstack import LocalStack
from tests.support.invoices import cursor_height, payments_rows


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    # A stack of its own: its node gets killed.
    local = LocalStack(
        Path(tmp_path_factory.mktemp("failover-killed")), block_time_s=None, postgres=postgres
    )
    local.start_all(signer=False)
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def test_failover_after_the_node_in_use_is_killed_credits_the_payment_exactly_once(
    stack: LocalStack, invoices, tap, tmp_path: Path
) -> None:
    a = stack.anvil
    b = Anvil(tmp_path / "b")
    assert stack.primary.adapter is not None
    assert stack.primary.adapter.stop() == 0
    stack.adapter_options[stack.primary.chain_id] = {"node_urls": [a.ws_url, b.ws_url]}
    stack.start_adapter()
    # Following the restarted adapter again: the core applies a fresh block
    # (its cursor, anchored at the first head it saw, reaches it). Waiting
    # for any cursor is not enough: a fresh core anchors one at once.
    a.mine(1)
    mined = a.head()
    deadline = time.monotonic() + 60
    while cursor_height(stack) < mined:
        assert time.monotonic() < deadline, "the core never followed the restarted adapter"
        time.sleep(0.2)
    invoice = invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=tap.parent,
            merchant_order_id="failover-killed",
            asset=stack.primary.native_asset,
            price=invoice_pb2.FiatAmount(amount="30.00", currency="USD"),
        )
    ).invoice
    tx = str(
        a.rpc(
            "eth_sendTransaction",
            {
                "from": stack.customer,
                "to": invoice.deposit_address,
                "value": hex(int(invoice.amount_due)),
            },
        )
    )
    paid_height = int(a.rpc.wait_receipt(tx)["blockNumber"], 16)
    a.mine(1)
    tap.wait_for(invoice.name, "invoice.confirming")
    # The core has applied A's blocks up to the fork point: B shares all of them.
    fork_height = a.head()
    deadline = time.monotonic() + 30
    while cursor_height(stack) < fork_height:
        assert time.monotonic() < deadline, "the core never reached A's head"
        time.sleep(0.2)
    b.extra_args = ["--fork-url", a.http_url, "--fork-block-number", str(fork_height)]
    b.start()
    try:
        for height in range(max(0, fork_height - 8), fork_height + 1):
            b.rpc("eth_getBlockByNumber", hex(height), True)  # fetched before A is gone
        assert b.rpc.wait_receipt(tx)["blockNumber"] == hex(paid_height)
        # The confirmations, on B only (a fork cannot mine once its origin is gone); A, the
        # node in use, stays at the fork point, so nothing the adapter sent differs on B.
        b.mine(8)
        assert a.head() == fork_height

        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()

        seen = tap.wait_for(invoice.name, "invoice.paid", timeout_s=60)
        types = [e.type for e in seen]
        assert "payment.reorged" not in types
        assert seen[-1].invoice.state == invoice_pb2.INVOICE_STATE_PAID
        assert seen[-1].invoice.amount_received == invoice.amount_due
        # B's blocks follow A's without a gap or a repeat: the core's cursor is B's head, and
        # its applier accepts only height + 1 with the stored parent hash.
        deadline = time.monotonic() + 30
        while cursor_height(stack) < b.head():
            assert time.monotonic() < deadline, "the core never followed B to its head"
            time.sleep(0.2)
        assert cursor_height(stack) == b.head() == fork_height + 8
        assert [e for e in tap.drain(1.5) if e.invoice.name == invoice.name] == []
        rows = payments_rows(stack.dsn, invoice.name.rsplit("/", 1)[1])
        assert [
            (r["tx_hash"], r["transfer_index"], int(r["amount"]), r["status"]) for r in rows
        ] == [(tx, 0, int(invoice.amount_due), "confirmed")]
    finally:
        b.stop()
