"""Outgoing transactions across reorgs, end to end (anvil_reorg): a refund
already confirmed whose block is reorged out goes back to broadcast, its
stored signed transaction (same nonce) is sent again and confirms once, and
the payouts after it are not blocked by the nonce the chain lost.

The chain of this module is final 12 blocks deep, so a confirmed refund
(3 confirmations) can still be reorged out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kassa.core.v1 import event_pb2, event_pb2_grpc, payout_pb2
from localstack.fullstack import LocalStack
from tests.support.payouts import (
    fresh_address,
    hot_nonce,
    ledger_check,
    paid_invoice,
    wait_payout,
)

FINALITY_DEPTH = 12
CONFIRMED = {payout_pb2.PAYOUT_STATE_CONFIRMED}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    local = LocalStack(
        Path(tmp_path_factory.mktemp("payout-reorgs")),
        block_time_s=None,
        postgres=postgres,
        core_options={"chain_extra": {"finality_depth": FINALITY_DEPTH}},  # type: ignore[dict-item]
    )
    local.start_all()
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def _block_of(stack: LocalStack, tx_hash: str) -> int | None:
    receipt = stack.anvil.rpc("eth_getTransactionReceipt", tx_hash)
    return None if receipt is None else int(receipt["blockNumber"], 16)


def _get(payouts, name: str) -> payout_pb2.Payout:
    return payouts.GetPayout(payout_pb2.GetPayoutRequest(name=name)).payout


def _events(stack: LocalStack, parent: str, name: str, until: list[str]) -> list[str]:
    """The event types of payout `name`, from the start until they end with `until`."""
    core = stack.core_setup()
    seen: list[str] = []
    with core.channel(core.admin_token()) as channel:
        stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
            event_pb2.StreamEventsRequest(parent=parent), timeout=30
        )
        for response in stream:
            if response.event.payout.name == name:
                seen.append(response.event.type)
            if seen[-len(until) :] == until:
                stream.cancel()
                break
    return seen


def test_a_reorged_confirmed_refund_is_resent_once_and_the_next_payout_confirms(
    stack: LocalStack, account
) -> None:
    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent, pay_extra=5_000_000)  # 30 for 25 due
    customer = fresh_address()
    nonce = hot_nonce(stack)
    refund = payouts.CreateRefund(
        payout_pb2.CreateRefundRequest(
            invoice=invoice.name, destination=customer, amount="5000000", reference="rma-7"
        )
    ).payout
    confirmed = wait_payout(stack, payouts, refund.name, CONFIRMED)
    assert confirmed.nonce == nonce and stack.token.balance_of(customer) == 5_000_000
    block = _block_of(stack, confirmed.tx_hash)
    assert block is not None
    depth = stack.anvil.head() - block + 1
    assert depth < FINALITY_DEPTH, "confirmed, but already final: nothing to test"

    # The refund's block and those after it are replaced by empty ones: the
    # customer has nothing on the canonical chain, the hot key's nonce went back.
    stack.anvil.rpc("anvil_reorg", depth, [])
    assert stack.token.balance_of(customer) == 0
    assert hot_nonce(stack) == nonce

    # A payout asked for right now gets the next nonce, which the chain cannot
    # mine until the refund's nonce is there again: it must not be stuck.
    to = fresh_address()
    payout = payouts.CreatePayout(
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=stack.token_asset, destination=to, amount="1000000", reference="after"
            ),
        )
    ).payout

    # Kassa notices, sends the same signed bytes again (same nonce, same hash).
    deadline = time.monotonic() + 30
    while _get(payouts, refund.name).state == payout_pb2.PAYOUT_STATE_CONFIRMED:
        assert time.monotonic() < deadline, "the reorged refund stayed confirmed"
        time.sleep(0.2)
    again = wait_payout(stack, payouts, refund.name, CONFIRMED)
    assert again.tx_hash == confirmed.tx_hash and again.nonce == nonce
    assert len(again.transactions) == 1
    assert _block_of(stack, again.tx_hash) is not None

    done = wait_payout(stack, payouts, payout.name, CONFIRMED)
    assert done.nonce == nonce + 1
    stack.anvil.mine(2)
    # Paid once: the same nonce cannot land twice.
    assert stack.token.balance_of(customer) == 5_000_000
    assert stack.token.balance_of(to) == 1_000_000
    assert hot_nonce(stack) == nonce + 2

    # Announced as it happened: confirmed, reorged, confirmed again.
    assert _events(stack, parent, refund.name, ["refund.reorged", "refund.confirmed"]) == [
        "refund.created",
        "refund.signed",
        "refund.broadcast",
        "refund.confirmed",
        "refund.reorged",
        "refund.confirmed",
    ]
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_payout_past_the_finality_depth_is_final(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)
    payout = payouts.CreatePayout(
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=stack.token_asset, destination=fresh_address(), amount="1000000"
            ),
        )
    ).payout
    done = wait_payout(stack, payouts, payout.name, CONFIRMED)
    stack.anvil.mine(FINALITY_DEPTH)
    deadline = time.monotonic() + 20
    while stack_final_time(stack, payout.name) is None:
        assert time.monotonic() < deadline, "never final"
        time.sleep(0.2)
    assert _get(payouts, payout.name).state == payout_pb2.PAYOUT_STATE_CONFIRMED
    assert done.tx_hash
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def stack_final_time(stack: LocalStack, name: str) -> object:
    import asyncio

    import asyncpg

    async def read() -> object:
        conn = await asyncpg.connect(stack.dsn)
        try:
            return await conn.fetchval(
                "SELECT final_time FROM payouts WHERE id = $1", name.rsplit("/", 1)[1]
            )
        finally:
            await conn.close()

    return asyncio.run(read())


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        ("token", "DESTINATION_REFUSED"),
        ("treasury", "DESTINATION_REFUSED"),
        ("hot", "DESTINATION_REFUSED"),
        ("deposit", "DESTINATION_REFUSED"),
        ("newline", "INVALID_ARGUMENT"),
        ("checksum", "INVALID_ARGUMENT"),
    ],
)
def test_refunds_to_kassa_itself_or_to_a_token_contract_are_refused(
    stack: LocalStack, account, destination: str, reason: str
) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent)
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    to = {
        "token": stack.token_asset.rsplit(":", 1)[1],
        "treasury": stack.treasury,
        "hot": stack.hot_address,
        "deposit": invoice.deposit_address,
        "newline": good + "\n",
        "checksum": good[:-1] + "D",
    }[destination]
    with pytest.raises(grpc.RpcError) as refused:
        payouts.CreateRefund(
            payout_pb2.CreateRefundRequest(invoice=invoice.name, destination=to, reference="x")
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert any(d.Unpack(info) for d in status.details) and info.reason == reason
    assert any(d.Unpack(bad) for d in status.details)
    assert [v.field for v in bad.field_violations] == ["destination"]
    # Nothing was written: the whole amount can still be refunded.
    listed = payouts.ListPayouts(payout_pb2.ListPayoutsRequest(parent=parent)).payouts
    assert not [p for p in listed if p.invoice == invoice.name]
