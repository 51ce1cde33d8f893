"""Deposit sweeps end to end: core → signer (mTLS, SoftHSM2, deposit key
hd:<index>) → EVM adapter → anvil. A token sweep is funded with gas by the
hot key — exactly the gas limit the node estimated for the transfer, plus a
margin — then the deposit address sends its tokens to the treasury; a native
sweep pays its own gas. The ledger books each and `kassactl ledger check`
stays clean."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc, payout_pb2, payout_pb2_grpc
from localstack.fullstack import LocalStack
from tests.support.kassactl import bootstrap_key
from tests.support.payouts import PAYOUT_SCOPES, hot_nonce, ledger_check, paid_invoice

CONFIRMED = payout_pb2.PAYOUT_STATE_CONFIRMED
FINAL = {CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED, payout_pb2.PAYOUT_STATE_CANCELLED}
GAS_TOKEN = 100_000  # core/payouts/txbuilder.py: the cap on a token transfer's gas limit
GAS_NATIVE = 21_000


@pytest.fixture
def account(stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[tuple[str, object]]:
    merchant_id = request.node.name.replace("_", "-")[5:45].lower().strip("-")
    token = stack.core_setup().merchant_token(merchant_id, PAYOUT_SCOPES)
    with stack.core_setup().channel(token) as channel:
        yield f"merchants/{merchant_id}", invoice_pb2_grpc.InvoiceServiceStub(channel)


@pytest.fixture(scope="module")
def platform_token(stack: LocalStack) -> str:
    """A platform key with the sweep scopes only."""
    return bootstrap_key(stack.dsn, "sweeps:read,sweeps:write")


def _native(stack: LocalStack, address: str) -> int:
    return int(stack.anvil.rpc("eth_getBalance", address, "latest"), 16)


def _nonce(stack: LocalStack, address: str) -> int:
    return int(stack.anvil.rpc("eth_getTransactionCount", address, "latest"), 16)


def _receipt_fee(stack: LocalStack, tx_hash: str) -> int:
    receipt = stack.anvil.rpc("eth_getTransactionReceipt", tx_hash)
    return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)


def _wait(
    stack: LocalStack, sweeps: payout_pb2_grpc.SweepServiceStub, name: str, timeout_s: float = 60
) -> payout_pb2.Sweep:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = sweeps.GetSweep(payout_pb2.GetSweepRequest(name=name)).sweep
        except Exception:  # the core may be restarting
            last = None
        if last is not None and last.state in FINAL:
            return last
        stack.anvil.mine(1)
        time.sleep(0.25)
    raise TimeoutError(f"{name} never final; last {last}")


def _run(sweeps: payout_pb2_grpc.SweepServiceStub, chain: str) -> dict[int, payout_pb2.Sweep]:
    created = sweeps.RunSweeps(payout_pb2.RunSweepsRequest(chain=chain)).sweeps
    return {s.kind: s for s in created}


def test_token_sweep_moves_the_funds_and_pays_gas_from_the_hot_key(
    stack: LocalStack, account, platform_token: str
) -> None:
    parent, invoices = account
    invoice = paid_invoice(stack, invoices, parent)
    deposit = invoice.deposit_address.lower()
    received = stack.token.balance_of(deposit)
    assert received == int(invoice.amount_received) > 0
    treasury_before = stack.token.balance_of(stack.treasury)
    hot_before, hot_nonce_before = _native(stack, stack.hot_address), hot_nonce(stack)
    assert _native(stack, deposit) == 0

    with stack.core_setup().channel(platform_token) as channel:
        sweeps = payout_pb2_grpc.SweepServiceStub(channel)
        planned = _run(sweeps, stack.chain)
        assert set(planned) == {payout_pb2.SWEEP_KIND_GAS_FUNDING, payout_pb2.SWEEP_KIND_SWEEP}
        funding, sweep = (
            planned[payout_pb2.SWEEP_KIND_GAS_FUNDING],
            planned[payout_pb2.SWEEP_KIND_SWEEP],
        )
        assert sweep.gas_funding == funding.name
        assert sweep.key_id.startswith("hd:") and sweep.source_address == deposit
        assert sweep.destination == stack.treasury.lower() and int(sweep.amount) == received
        assert sweep.invoice == invoice.name
        assert funding.source_address == stack.hot_address and funding.destination == deposit
        # Planning again while it is in progress plans nothing.
        assert _run(sweeps, stack.chain) == {}

        funded = _wait(stack, sweeps, funding.name)
        done = _wait(stack, sweeps, sweep.name)
        assert funded.state == CONFIRMED and done.state == CONFIRMED
        assert len(done.transactions) == 1 and done.nonce == 0

        stack.anvil.mine(2)
        assert stack.token.balance_of(deposit) == 0
        assert stack.token.balance_of(stack.treasury) == treasury_before + received
        assert _nonce(stack, deposit) == 1
        # The native coin came from the hot key: the funding plus the funding's own gas.
        funding_fee = _receipt_fee(stack, funded.tx_hash)
        assert int(funded.network_fee) == funding_fee
        assert _native(stack, stack.hot_address) == hot_before - int(funding.amount) - funding_fee
        assert hot_nonce(stack) == hot_nonce_before + 1
        # What the sweep's gas did not use stays on the deposit address (gas limit
        # headroom; a later sweep of this address funds only the shortfall).
        sweep_fee = _receipt_fee(stack, done.tx_hash)
        assert int(done.network_fee) == sweep_fee
        assert _native(stack, deposit) == int(funding.amount) - sweep_fee
        # Exactly the sweep's worst-case gas: its gas limit x the fixed max fee per gas, and
        # that limit is the node's estimate with a margin, not a fixed 100,000: what the
        # transfer used is close to it, so little gas is left unburned on the deposit address.
        gas_limit = int(stack.anvil.rpc("eth_getTransactionByHash", done.tx_hash)["gas"], 16)
        used = int(stack.anvil.rpc("eth_getTransactionReceipt", done.tx_hash)["gasUsed"], 16)
        assert int(funding.amount) == gas_limit * int(sweep.max_fee_per_gas)
        assert used <= gas_limit <= used * 3 // 2 and gas_limit < GAS_TOKEN
        # Swept after its last payment: nothing more to do for this address.
        assert _run(sweeps, stack.chain) == {}
        listed = sweeps.ListSweeps(payout_pb2.ListSweepsRequest(chain=stack.chain)).sweeps
        assert {s.name for s in listed} >= {funding.name, sweep.name}
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def test_core_killed_after_signing_the_sweep_sweeps_exactly_once(
    stack: LocalStack, account, platform_token: str
) -> None:
    parent, invoices = account
    invoice = paid_invoice(stack, invoices, parent)
    deposit = invoice.deposit_address.lower()
    received = stack.token.balance_of(deposit)
    treasury_before = stack.token.balance_of(stack.treasury)
    setup = stack.core_setup()
    stack.processes["core"].stop()
    setup.env = {"KASSA_FAULT": "sweep-after-sign"}
    stack.start_core()
    try:
        with setup.channel(platform_token) as channel:
            sweeps = payout_pb2_grpc.SweepServiceStub(channel)
            planned = _run(sweeps, stack.chain)
        sweep = planned[payout_pb2.SWEEP_KIND_SWEEP]
        core = stack.processes["core"]
        for _ in range(150):
            if not core.running:
                break
            stack.anvil.mine(1)
            time.sleep(0.2)
        assert not core.running, "the fault point was never reached"
    finally:
        setup.env = None
    # Signed and stored, never sent: the deposit address has not moved.
    assert stack.token.balance_of(deposit) == received
    assert _nonce(stack, deposit) == 0
    stack.start_core()
    with setup.channel(platform_token) as channel:
        sweeps = payout_pb2_grpc.SweepServiceStub(channel)
        done = _wait(stack, sweeps, sweep.name)
        assert done.state == CONFIRMED and len(done.transactions) == 1
        stack.anvil.mine(3)
        assert _nonce(stack, deposit) == 1
        assert stack.token.balance_of(deposit) == 0
        assert stack.token.balance_of(stack.treasury) == treasury_before + received
        assert _run(sweeps, stack.chain) == {}
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def _pay_native(stack: LocalStack, invoices, parent: str) -> invoice_pb2.Invoice:
    invoice = invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id="native-sweep",
            asset=stack.primary.native_asset,
            price=invoice_pb2.FiatAmount(amount="30.00", currency="USD"),
        )
    ).invoice
    tx = stack.anvil.rpc(
        "eth_sendTransaction",
        {
            "from": stack.customer,
            "to": invoice.deposit_address,
            "value": hex(int(invoice.amount_due)),
        },
    )
    stack.anvil.rpc.wait_receipt(str(tx))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stack.anvil.mine(1)
        got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
        if got.state == invoice_pb2.INVOICE_STATE_PAID:
            return got
        time.sleep(0.2)
    raise TimeoutError(f"{invoice.name} not paid")


def test_native_sweep_pays_its_own_gas_and_moves_the_rest(
    stack: LocalStack, account, platform_token: str
) -> None:
    parent, invoices = account
    invoice = _pay_native(stack, invoices, parent)
    deposit = invoice.deposit_address.lower()
    received = _native(stack, deposit)
    assert received == int(invoice.amount_received) == int(invoice.amount_due) > 0
    treasury_before = _native(stack, stack.treasury)
    hot_before, hot_nonce_before = _native(stack, stack.hot_address), hot_nonce(stack)

    with stack.core_setup().channel(platform_token) as channel:
        sweeps = payout_pb2_grpc.SweepServiceStub(channel)
        planned = _run(sweeps, stack.chain)
        # No gas funding: the coin being swept pays for its own transfer.
        assert set(planned) == {payout_pb2.SWEEP_KIND_SWEEP}
        sweep = planned[payout_pb2.SWEEP_KIND_SWEEP]
        assert sweep.asset == stack.primary.native_asset and not sweep.gas_funding
        assert sweep.key_id.startswith("hd:") and sweep.source_address == deposit
        assert sweep.destination == stack.treasury.lower() and sweep.invoice == invoice.name
        budget = GAS_NATIVE * int(sweep.max_fee_per_gas)
        assert int(sweep.amount) == received - budget
        assert _run(sweeps, stack.chain) == {}

        done = _wait(stack, sweeps, sweep.name)
        assert done.state == CONFIRMED and len(done.transactions) == 1 and done.nonce == 0
        stack.anvil.mine(2)
        fee = _receipt_fee(stack, done.tx_hash)
        assert int(done.network_fee) == fee
        tx = stack.anvil.rpc("eth_getTransactionByHash", done.tx_hash)
        assert int(tx["gas"], 16) == GAS_NATIVE and int(tx["value"], 16) == int(sweep.amount)
        assert _native(stack, stack.treasury) == treasury_before + int(sweep.amount)
        # Left on the deposit address: the part of the gas budget the base fee did not take.
        assert _native(stack, deposit) == budget - fee
        assert _nonce(stack, deposit) == 1
        # The hot key paid nothing.
        assert _native(stack, stack.hot_address) == hot_before
        assert hot_nonce(stack) == hot_nonce_before
        assert _run(sweeps, stack.chain) == {}
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr
