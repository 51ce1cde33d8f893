"""Deposit sweeps end to end: core → signer (mTLS, SoftHSM2, deposit key
hd:<index>) → EVM adapter → anvil. A token sweep is funded with gas by the
hot key, then the deposit address sends its tokens to the treasury; the
ledger books both and `kassactl ledger check` stays clean."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kassa.core.v1 import invoice_pb2_grpc, payout_pb2, payout_pb2_grpc
from localstack.fullstack import LocalStack
from tests.support.kassactl import bootstrap_key
from tests.support.payouts import PAYOUT_SCOPES, hot_nonce, ledger_check, paid_invoice

CONFIRMED = payout_pb2.PAYOUT_STATE_CONFIRMED
FINAL = {CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED, payout_pb2.PAYOUT_STATE_CANCELLED}
GAS_TOKEN = 100_000  # core/payouts/txbuilder.py: the gas limit of a token transfer


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
        # Exactly the sweep's worst-case gas: limit x the fixed max fee per gas.
        assert int(funding.amount) == GAS_TOKEN * int(sweep.max_fee_per_gas)
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
