"""Webhook and payout workers across three core replicas, real processes.

- Webhooks: every replica's delivery worker claims rows (FOR UPDATE SKIP
  LOCKED with a lease): each event reaches the receiver exactly once, and
  exactly one attempt is made for it across all replicas.
- Payouts: one elected replica sends (leadership role `payouts`); payouts
  created through every replica, the sending replica SIGKILLed after they are
  created: each is paid exactly once, checked on chain (destination balances,
  the hot key's nonce), and `kassactl ledger check` passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from kassa.core.v1 import (
    invoice_pb2,
    invoice_pb2_grpc,
    payout_pb2,
    payout_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from localstack.fullstack import LocalStack
from localstack.replicas import Replicas, leadership_options
from localstack.stack import MERCHANT_SCOPES
from tests.support.payouts import (
    PAYOUT_SCOPES,
    fresh_address,
    hot_nonce,
    ledger_check,
    paid_invoice,
    wait_payout,
)
from tests.support.webhooks import AcceptingReceiver

LEASE_S = 3.0
FINAL = {payout_pb2.PAYOUT_STATE_CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[Replicas]:
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("replica-workers")),
        block_time_s=None,
        postgres=postgres,
        core_options={
            **leadership_options(LEASE_S),
            "webhooks": {"allow_private_targets": True, "poll_interval_s": 0.1},
        },
    )
    stack.start_all()
    group = Replicas(stack, 3)
    group.start_others()
    yield group
    others = group.stop_others()
    codes = stack.stop()
    assert all(c == 0 for c in [*codes.values(), *others.values()]), (codes, others)


def _sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_each_webhook_event_is_delivered_once_across_replicas(replicas: Replicas) -> None:
    stack = replicas.stack
    token = replicas.setups[0].merchant_token(
        "hooks", (*MERCHANT_SCOPES, "webhooks:read", "webhooks:write")
    )
    receiver = AcceptingReceiver().start()
    marks = [replicas.log(i).stat().st_size for i in range(3)]
    try:
        with replicas.setups[1].channel(token) as channel:
            webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhookEndpoint(
                webhook_pb2.CreateWebhookEndpointRequest(
                    parent="merchants/hooks",
                    webhook_endpoint=webhook_pb2.WebhookEndpoint(
                        url=receiver.url(), event_types=["invoice.created"]
                    ),
                )
            )
        count = 12
        for i in range(count):
            with replicas.setups[i % 3].channel(token) as channel:
                invoice_pb2_grpc.InvoiceServiceStub(channel).CreateInvoice(
                    invoice_pb2.CreateInvoiceRequest(
                        parent="merchants/hooks",
                        merchant_order_id=f"hook-{i}",
                        asset=stack.token_asset,
                        price=invoice_pb2.FiatAmount(amount="3.00", currency="USD"),
                    )
                )
        receiver.wait_for(count, timeout_s=60)
        time.sleep(2.0)  # a second delivery of anything would arrive by now
    finally:
        receiver.stop()
    got = [d.headers["Kassa-Event-Id"] for d in receiver.received]
    expected = {
        str(r["id"])
        for r in _sql(
            stack.dsn,
            "SELECT id FROM events WHERE merchant_id = 'hooks' AND type = 'invoice.created'",
        )
    }
    assert len(expected) == count
    assert sorted(got) == sorted(expected)  # each exactly once
    # And exactly one attempt for each, whichever replica made it.
    attempts: dict[str, int] = {}
    for i in range(3):
        text = replicas.log(i).read_text(errors="replace")[marks[i] :]
        for line in text.splitlines():
            if '"webhook attempt"' in line:
                for event_id in expected:
                    if event_id in line:
                        attempts[event_id] = attempts.get(event_id, 0) + 1
    assert attempts == dict.fromkeys(expected, 1)


def test_payouts_created_on_every_replica_are_sent_once_across_a_leader_kill(
    replicas: Replicas,
) -> None:
    stack = replicas.stack
    token = replicas.setups[0].merchant_token("payer", PAYOUT_SCOPES)
    parent = "merchants/payer"
    with replicas.setups[0].channel(token) as channel:
        paid_invoice(stack, invoice_pb2_grpc.InvoiceServiceStub(channel), parent, "100.00")
    nonce_before = hot_nonce(stack)
    payouts: list[tuple[str, str, int]] = []  # (name, destination, amount)
    for i in range(4):
        to, amount = fresh_address(), 1_000_000 * (i + 1)
        with replicas.setups[i % 3].channel(token) as channel:
            created = (
                payout_pb2_grpc.PayoutServiceStub(channel)
                .CreatePayout(
                    payout_pb2.CreatePayoutRequest(
                        parent=parent,
                        payout=payout_pb2.Payout(
                            asset=stack.token_asset,
                            destination=to,
                            amount=str(amount),
                            reference="r",
                        ),
                        request_id=f"replicas-payout-{i}",
                    )
                )
                .payout
            )
        payouts.append((created.name, to, amount))
    leader = _sql(stack.dsn, "SELECT holder FROM leader_epochs WHERE role = 'payouts'")
    assert leader, "no replica leads payouts"
    victim = replicas.index_of(leader[0]["holder"])
    replicas.kill(victim)  # the sending replica dies with the payouts in its hands
    try:
        survivor = next(i for i in range(3) if i != victim)
        with replicas.setups[survivor].channel(token) as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            for name, _, _ in payouts:
                done = wait_payout(stack, stub, name, FINAL, timeout_s=90)
                assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED, done
    finally:
        replicas.start(victim)
    for _, to, amount in payouts:
        assert stack.token.balance_of(to) == amount  # on chain: paid, and paid once
    assert hot_nonce(stack) == nonce_before + len(payouts)
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr
