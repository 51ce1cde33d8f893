"""Payouts end to end: core → signer (mTLS, SoftHSM2) → EVM adapter → anvil,
with the ledger hold posted on confirmation and `kassactl ledger check` clean."""

from __future__ import annotations

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kassa.core.v1 import payout_pb2
from localstack.fullstack import LocalStack
from tests.support.payouts import (
    fresh_address,
    hot_nonce,
    ledger_check,
    paid_invoice,
    wait_payout,
)

FINAL = {payout_pb2.PAYOUT_STATE_CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED}


def _create(payouts, parent: str, asset: str, to: str, amount: int, request_id: str = ""):
    return payouts.CreatePayout(
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=asset, destination=to, amount=str(amount), reference="r"
            ),
            request_id=request_id,
        )
    ).payout


def test_payout_confirms_once_and_the_ledger_balances(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)  # 25 TUSD available
    to = fresh_address()
    nonce_before = hot_nonce(stack)

    with pytest.raises(grpc.RpcError) as refused:
        _create(payouts, parent, stack.token_asset, to, 26_000_000)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "INSUFFICIENT_FUNDS" in str(refused.value.trailing_metadata())

    created = _create(payouts, parent, stack.token_asset, to, 10_000_000, request_id="p-1")
    assert created.state == payout_pb2.PAYOUT_STATE_CREATED
    again = _create(payouts, parent, stack.token_asset, to, 10_000_000, request_id="p-1")
    assert again.name == created.name
    with pytest.raises(grpc.RpcError) as reused:
        _create(payouts, parent, stack.token_asset, to, 11_000_000, request_id="p-1")
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS

    done = wait_payout(stack, payouts, created.name, FINAL)
    assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED
    assert int(done.network_fee) > 0
    assert stack.token.balance_of(to) == 10_000_000
    assert hot_nonce(stack) == nonce_before + 1
    assert done.nonce == nonce_before
    with pytest.raises(grpc.RpcError) as late:
        payouts.CancelPayout(payout_pb2.CancelPayoutRequest(name=done.name))
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = payouts.ListPayouts(payout_pb2.ListPayoutsRequest(parent=parent)).payouts
    assert [p.name for p in listed] == [created.name]
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def test_cancel_before_signing_releases_the_hold(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)
    # Stop the worker from reaching it first: the adapter is needed for fees.
    stack.processes["core"].kill()
    stack.start_core()
    created = _create(payouts, parent, stack.token_asset, fresh_address(), 25_000_000)
    try:
        cancelled = payouts.CancelPayout(payout_pb2.CancelPayoutRequest(name=created.name)).payout
    except grpc.RpcError as exc:  # the worker was quicker: it must then complete
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        wait_payout(stack, payouts, created.name, FINAL)
        return
    assert cancelled.state == payout_pb2.PAYOUT_STATE_CANCELLED
    # The whole balance is free again.
    again = _create(payouts, parent, stack.token_asset, fresh_address(), 25_000_000)
    assert wait_payout(stack, payouts, again.name, FINAL).state == payout_pb2.PAYOUT_STATE_CONFIRMED
    assert ledger_check(stack).returncode == 0


@pytest.mark.parametrize("fault", ["payout-after-sign", "payout-after-broadcast"])
def test_core_killed_around_broadcast_pays_exactly_once(
    stack: LocalStack, account, fault: str
) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)
    to = fresh_address()
    nonce_before = hot_nonce(stack)
    setup = stack.core_setup()
    stack.processes["core"].stop()
    setup.env = {"KASSA_FAULT": fault}
    stack.start_core()
    try:
        created = _create(
            payouts, parent, stack.token_asset, to, 7_000_000, request_id=f"crash-{fault}"
        )
        core = stack.processes["core"]
        for _ in range(100):
            if not core.running:
                break
            stack.anvil.mine(1)
            import time

            time.sleep(0.2)
        assert not core.running, "the fault point was never reached"
    finally:
        setup.env = None
    signed_before = stack.token.balance_of(to)
    if fault == "payout-after-sign":
        assert signed_before == 0 and hot_nonce(stack) == nonce_before  # signed, never sent
    stack.start_core()
    done = wait_payout(stack, payouts, created.name, FINAL)
    assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED
    stack.anvil.mine(3)
    assert stack.token.balance_of(to) == 7_000_000
    assert hot_nonce(stack) == nonce_before + 1
    assert len(done.transactions) == 1
    assert ledger_check(stack).returncode == 0


def test_stuck_transaction_is_replaced_and_only_one_lands(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)
    to = fresh_address()
    nonce_before = hot_nonce(stack)
    stack.anvil.rpc("evm_setAutomine", False)
    try:
        created = _create(payouts, parent, stack.token_asset, to, 3_000_000)
        broadcast = wait_payout(
            stack, payouts, created.name, {payout_pb2.PAYOUT_STATE_BROADCAST}, mine=False
        )
        first = broadcast.transactions[0].tx_hash
        # Nothing is mined: after replace_after_s the core re-signs with higher fees.
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = payouts.GetPayout(payout_pb2.GetPayoutRequest(name=created.name)).payout
            if len(got.transactions) >= 2 and got.state == payout_pb2.PAYOUT_STATE_BROADCAST:
                break
            time.sleep(0.3)
        else:
            raise TimeoutError("no replacement")
        old, new = got.transactions[0], got.transactions[1]
        assert old.tx_hash == first and new.tx_hash != first
        assert int(new.max_priority_fee_per_gas) * 100 >= int(old.max_priority_fee_per_gas) * 110
        assert int(new.max_fee_per_gas) * 100 >= int(old.max_fee_per_gas) * 110
        assert got.nonce == nonce_before
    finally:
        stack.anvil.rpc("evm_setAutomine", True)
    done = wait_payout(stack, payouts, created.name, FINAL)
    assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED
    statuses = sorted(t.status for t in done.transactions)
    assert statuses.count(payout_pb2.PAYOUT_TRANSACTION_STATUS_LANDED) == 1
    assert stack.token.balance_of(to) == 3_000_000
    assert hot_nonce(stack) == nonce_before + 1
    assert ledger_check(stack).returncode == 0


def test_payout_above_the_threshold_waits_for_approvals(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent, price_usd="1500.00")
    to = fresh_address()
    created = _create(payouts, parent, stack.token_asset, to, 1_200_000_000)
    waiting = wait_payout(stack, payouts, created.name, {payout_pb2.PAYOUT_STATE_WAITING_APPROVAL})
    assert waiting.waiting_reason == "APPROVALS_REQUIRED"
    assert sorted(waiting.required_approvers) == ["alice", "bob"]
    assert waiting.approval_threshold == 2
    assert stack.token.balance_of(to) == 0
    # Approvers sign the digest of the exact body the core will send.
    import hashlib

    body = waiting.sign_request.body
    digest = hashlib.sha256(b"kassa.signer.v1.SignRequestBody\x00" + body).digest()
    assert digest.hex() == waiting.sign_request.body_digest
    for name in ("alice", "bob"):
        key: Ed25519PrivateKey = stack.approvers[name]
        payouts.ApprovePayout(
            payout_pb2.ApprovePayoutRequest(
                name=created.name,
                approver_key_id=name,
                signature=key.sign(digest),
                body_digest=digest.hex(),
            )
        )
    done = wait_payout(stack, payouts, created.name, FINAL)
    assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED
    assert stack.token.balance_of(to) == 1_200_000_000
    assert ledger_check(stack).returncode == 0
