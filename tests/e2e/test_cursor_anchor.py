"""A core that has applied no block yet still loses no block across an
adapter reconnect (issue 19): it anchors its cursor at the first head the
adapter names, so a payment mined while the adapter is down is applied when
it comes back — credited exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from kassa.core.v1 import invoice_pb2
from localstack.fullstack import LocalStack
from tests.support.invoices import create, payments_rows
from tests.support.payouts import ledger_check


def cursor_height(stack: LocalStack) -> int:
    """The height of the core's cursor on the stack's chain; -1 without one."""

    async def query() -> int:
        conn = await asyncpg.connect(stack.dsn)
        try:
            found = await conn.fetchval(
                "SELECT height FROM chain_cursors WHERE chain = $1", stack.chain
            )
            return int(found) if found is not None else -1
        finally:
            await conn.close()

    return asyncio.run(query())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    # A stack of its own: a fresh database whose core has applied no block.
    local = LocalStack(
        Path(tmp_path_factory.mktemp("anchor")), block_time_s=None, postgres=postgres
    )
    local.start_all(signer=False)
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def test_a_payment_mined_while_a_fresh_cores_adapter_is_down_is_credited_once(
    stack: LocalStack, invoices, merchant
) -> None:
    head = stack.anvil.head()
    # No block mined since the core started: its cursor can only be the head it was told.
    deadline = time.monotonic() + 30
    while cursor_height(stack) < 0:
        assert time.monotonic() < deadline, "the core never anchored its cursor"
        time.sleep(0.2)
    assert cursor_height(stack) == head == stack.anvil.head()

    invoice = create(stack, invoices, merchant[0], "mined-during-reconnect")
    assert stack.primary.adapter is not None
    assert stack.primary.adapter.stop() == 0
    tx = stack.token.transfer(stack.customer, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.rpc.wait_receipt(tx)  # automine: a block the core has not seen
    stack.anvil.mine(1)
    stack.start_adapter()

    deadline = time.monotonic() + 60
    got = None
    while time.monotonic() < deadline:
        stack.anvil.mine(1)
        got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
        if got.state == invoice_pb2.INVOICE_STATE_PAID:
            break
        time.sleep(0.3)
    assert got is not None and got.state == invoice_pb2.INVOICE_STATE_PAID, got
    assert got.amount_received == invoice.amount_due
    rows = payments_rows(stack.dsn, invoice.name.rsplit("/", 1)[1])
    assert [(r["tx_hash"], r["status"]) for r in rows] == [(tx.lower(), "confirmed")]
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr
