"""Two EVM chains at once: one anvil and one adapter each, invoices on both, no cross-talk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kassa.core.v1 import invoice_pb2
from localstack.fullstack import LocalStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    local = LocalStack(
        Path(tmp_path_factory.mktemp("two-chains")),
        chain_ids=(31337, 31338),
        block_time_s=None,
        postgres=postgres,
    )
    local.start_all(signer=False)
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def test_invoices_on_two_chains_are_paid_each_on_its_own(stack: LocalStack, invoices, tap) -> None:
    one, two = stack.chains
    assert one.token_asset != two.token_asset

    def create(chain, order: str) -> invoice_pb2.Invoice:
        return invoices.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=tap.parent,
                merchant_order_id=order,
                asset=chain.token_asset,
                price=invoice_pb2.FiatAmount(amount="10.00", currency="USD"),
            )
        ).invoice

    a, b = create(one, "on-one"), create(two, "on-two")
    assert (a.network, b.network) == (one.chain, two.chain)

    # Chain two's token sent to a's address (valid there too) must not pay a.
    cross = two.token.transfer(two.customer, a.deposit_address, int(a.amount_due))
    two.anvil.rpc.wait_receipt(cross)
    flagged = tap.wait_for(a.name, "invoice.flagged")[-1]
    assert set(flagged.invoice.flags) == {invoice_pb2.INVOICE_FLAG_WRONG_ASSET}
    assert flagged.invoice.amount_pending == "0"

    for chain, invoice in ((one, a), (two, b)):
        chain.anvil.rpc.wait_receipt(
            chain.token.transfer(chain.customer, invoice.deposit_address, int(invoice.amount_due))
        )
        chain.anvil.mine(2)
        paid = tap.wait_for(invoice.name, "invoice.paid")[-1]
        assert paid.invoice.amount_received == invoice.amount_due
        assert {
            p.asset for p in paid.invoice.payments if p.status != invoice_pb2.PAYMENT_STATUS_REORGED
        } >= {chain.token_asset}

    final_a = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=a.name)).invoice
    counted = [p for p in final_a.payments if p.asset == one.token_asset]
    assert [p.amount for p in counted] == [a.amount_due]
    assert final_a.amount_received == a.amount_due
