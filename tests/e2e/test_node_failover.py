"""The node the adapter uses dies and the other one saw a different chain:
the core still credits the payment exactly once.

Node B is an anvil forked from node A (the stack's node) at its head, so the
two share every block up to there. A mines the payment at the next height;
B mines two empty blocks there instead, the same signed payment after them,
then more. The adapter is given both URLs and uses A; A is SIGKILLed.
The switch to B is a reorg — the payment's block goes (payment.reorged), B's
blocks come — and the invoice ends paid with one payment row, confirmed.
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
        Path(tmp_path_factory.mktemp("failover")), block_time_s=None, postgres=postgres
    )
    local.start_all(signer=False)
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def test_failover_to_a_diverged_node_credits_the_payment_exactly_once(
    stack: LocalStack, invoices, tap, tmp_path: Path
) -> None:
    a = stack.anvil
    b = Anvil(tmp_path / "b")  # its port now, its start once its fork point is known
    # The adapter, restarted with both nodes; it uses A, the first.
    assert stack.primary.adapter is not None
    assert stack.primary.adapter.stop() == 0
    stack.adapter_options[stack.primary.chain_id] = {"node_urls": [a.ws_url, b.ws_url]}
    stack.start_adapter()
    # Following the restarted adapter again: the core applies a fresh block
    # (its cursor, anchored at the first head it saw, reaches it).
    a.mine(1)
    mined = a.head()
    deadline = time.monotonic() + 60
    while cursor_height(stack) < mined:
        assert time.monotonic() < deadline, "the core never followed the restarted adapter"
        time.sleep(0.2)
    fork_height = a.head()
    b.extra_args = ["--fork-url", a.http_url, "--fork-block-number", str(fork_height)]
    b.start()
    try:
        assert (
            b.rpc("eth_getBlockByNumber", hex(fork_height), False)["hash"]
            == a.rpc("eth_getBlockByNumber", hex(fork_height), False)["hash"]
        )
        invoice = invoices.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=tap.parent,
                merchant_order_id="failover",
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
        a.rpc.wait_receipt(tx)  # automine: A's block fork_height + 1
        raw = str(a.rpc("eth_getRawTransactionByHash", tx))
        tap.wait_for(invoice.name, "invoice.confirming")

        # B: other blocks at fork_height + 1 and + 2, the payment at + 3, then 6 more.
        b.mine(2)
        assert str(b.rpc("eth_sendRawTransaction", raw)).lower() == tx
        b.rpc.wait_receipt(tx)
        b.mine(6)
        assert b.rpc.wait_receipt(tx)["blockNumber"] == hex(fork_height + 3)
        # B reads its fork's history from A lazily: have it fetch what the
        # adapter will ask for before A is gone.
        for height in range(max(0, fork_height - 8), fork_height + 1):
            b.rpc("eth_getBlockByNumber", hex(height), True)

        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()

        seen = tap.wait_for(invoice.name, "invoice.paid", timeout_s=60)
        types = [e.type for e in seen]
        assert "payment.reorged" in types
        assert types.index("payment.reorged") < types.index("invoice.paid")
        paid = seen[-1]
        assert paid.invoice.state == invoice_pb2.INVOICE_STATE_PAID
        assert paid.invoice.amount_received == invoice.amount_due
        # B's later blocks (all mined before A died: a fork cannot mine once
        # its origin is gone) neither credit nor announce it again.
        assert [e for e in tap.drain(1.5) if e.invoice.name == invoice.name] == []
        rows = payments_rows(stack.dsn, invoice.name.rsplit("/", 1)[1])
        assert [
            (r["tx_hash"], r["transfer_index"], int(r["amount"]), r["status"]) for r in rows
        ] == [(tx, 0, int(invoice.amount_due), "confirmed")]
    finally:
        b.stop()
