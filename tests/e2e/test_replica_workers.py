"""Webhook and payout workers across three core replicas, real processes.

- Webhooks: every replica's delivery worker claims rows (FOR UPDATE SKIP
  LOCKED with a lease): each event reaches the receiver exactly once, and
  exactly one attempt is made for it across all replicas.
- Payouts: one elected replica sends (leadership role `payouts`); payouts
  created through every replica, the sending replica SIGKILLed after they are
  created: each is paid exactly once, checked on chain (destination balances,
  the hot key's nonce), and `kassactl ledger check` passes.
- Fence: the payouts leader paused (SIGSTOP) past its lease and resumed
  (SIGCONT) after another replica took the role has its write refused by the
  fence (database and core logs); the payout is sent once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kassa.core.v1 import (
    invoice_pb2,
    invoice_pb2_grpc,
    payout_pb2,
    payout_pb2_grpc,
    reconciliation_pb2,
    reconciliation_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from localstack.fullstack import LocalStack
from localstack.replicas import Replicas, leadership_options
from localstack.stack import MERCHANT_SCOPES
from tests.support.grpc_errors import rich
from tests.support.payouts import (
    PAYOUT_SCOPES,
    fresh_address,
    hot_nonce,
    ledger_check,
    paid_invoice,
    wait_payout,
)
from tests.support.waiting import db
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
        for r in db(
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
    leader = db(stack.dsn, "SELECT holder FROM leader_epochs WHERE role = 'payouts'")
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


def test_a_paused_payouts_leader_resumed_past_its_lease_has_its_write_fenced(
    replicas: Replicas, postgres
) -> None:
    """SIGSTOP of the payouts leader past its lease: another replica takes the
    role (the epoch moves). That one is paused in turn, a payout is created
    through the third, and the first is resumed: it still believes it leads for
    a moment, picks the payout up, and its write is refused by the fence (in
    the database's log and its own), never applied. The payout is then sent
    once by whichever replica leads next."""
    stack = replicas.stack
    dsn = stack.dsn
    for i in range(3):
        if not replicas.process(i).running:
            replicas.start(i)

    def lead() -> tuple[str, int] | None:
        rows = db(dsn, "SELECT holder, epoch FROM leader_epochs WHERE role = 'payouts'")
        return (rows[0]["holder"], int(rows[0]["epoch"])) if rows else None

    deadline = time.monotonic() + 60
    while lead() is None:
        assert time.monotonic() < deadline, "no replica leads payouts"
        time.sleep(0.2)
    old_name, old_epoch = lead() or ("", 0)
    old = replicas.index_of(old_name)
    token = replicas.setups[0].merchant_token("paused", PAYOUT_SCOPES)
    parent = "merchants/paused"
    with replicas.setups[old].channel(token) as channel:
        paid_invoice(stack, invoice_pb2_grpc.InvoiceServiceStub(channel), parent, "50.00")
    nonce_before = hot_nonce(stack)
    pg_log = Path(postgres.log_file)
    pg_mark = pg_log.stat().st_size
    core_log = replicas.log(old)
    core_mark = core_log.stat().st_size
    paused = [old]
    replicas.pause(old)  # SIGSTOP, idle between passes: its session ends after a lease
    try:
        deadline = time.monotonic() + 60
        while (now := lead()) is None or now[1] == old_epoch:
            assert time.monotonic() < deadline, "no takeover while the leader was paused"
            time.sleep(0.1)
        new_name, _ = now
        assert new_name != old_name
        new = replicas.index_of(new_name)
        replicas.pause(new)  # the payout below waits for no one but the deposed leader
        paused.append(new)
        third = next(i for i in range(3) if i not in (old, new))
        to, amount = fresh_address(), 2_000_000
        with replicas.setups[third].channel(token) as channel:
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
                        request_id="paused-leader-payout",
                    )
                )
                .payout
            )
        replicas.resume(old)  # SIGCONT: it carries on with its stale epoch
        paused.remove(old)
        refusal = f"fenced write refused: payouts epoch {old_epoch} is no longer current (stored "
        deadline = time.monotonic() + 30
        while refusal not in pg_log.read_text(errors="replace")[pg_mark:]:
            assert time.monotonic() < deadline, (
                f"no refusal of payouts epoch {old_epoch}; deposed replica's log:\n"
                f"{core_log.read_text(errors='replace')[core_mark:][-4000:]}"
            )
            time.sleep(0.1)
        core_text = core_log.read_text(errors="replace")[core_mark:]
        assert any(
            '"fenced write refused"' in line and '"payouts"' in line
            for line in core_text.splitlines()
        ), core_text[-4000:]
    finally:
        for i in paused:
            replicas.resume(i)
    with replicas.setups[third].channel(token) as channel:
        done = wait_payout(
            stack, payout_pb2_grpc.PayoutServiceStub(channel), created.name, FINAL, timeout_s=90
        )
    assert done.state == payout_pb2.PAYOUT_STATE_CONFIRMED, done
    assert stack.token.balance_of(to) == amount  # on chain: paid once
    assert hot_nonce(stack) == nonce_before + 1
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def test_on_demand_sweeps_and_reconciliation_run_only_on_their_leader(
    replicas: Replicas,
) -> None:
    """RunSweeps and RunReconciliation asked of every replica: the one that leads the
    role runs it (under its fence, like its scheduled runs); the others refuse with
    UNAVAILABLE, NOT_LEADER and write nothing, so two replicas never plan the same
    sweeps or race a run. The attacker is no one but a load balancer spreading an
    operator's calls over the replicas."""
    stack = replicas.stack
    for i in range(3):
        if not replicas.process(i).running:
            replicas.start(i)
    admin = replicas.setups[0].admin_token()

    def holder_of(role: str) -> str | None:
        rows = db(stack.dsn, "SELECT holder FROM leader_epochs WHERE role = $1", role)
        return str(rows[0]["holder"]) if rows else None

    def ask(index: int, role: str) -> str:
        """OK, or the refusal's reason."""
        with replicas.setups[index].channel(admin) as channel:
            try:
                if role == "sweeps":
                    payout_pb2_grpc.SweepServiceStub(channel).RunSweeps(
                        payout_pb2.RunSweepsRequest(chain=stack.chain), timeout=60
                    )
                else:
                    reconciliation_pb2_grpc.ReconciliationServiceStub(channel).RunReconciliation(
                        reconciliation_pb2.RunReconciliationRequest(chain=stack.chain),
                        timeout=120,
                    )
                return "OK"
            except grpc.RpcError as exc:
                refusal = rich(exc)
                assert refusal.code == grpc.StatusCode.UNAVAILABLE, refusal
                assert refusal.metadata == {"role": role}, refusal
                return refusal.reason

    for role in ("sweeps", "reconcile"):
        runs_before = len(db(stack.dsn, "SELECT id FROM reconciliation_runs"))
        oks = 0
        deadline = time.monotonic() + 60
        while True:
            answers = [ask(i, role) for i in range(3)]
            oks += answers.count("OK")
            leader = holder_of(role)
            if sorted(answers) == ["NOT_LEADER", "NOT_LEADER", "OK"] and leader is not None:
                break  # a takeover between the calls would show two OKs or none: ask again
            assert time.monotonic() < deadline, (role, answers)
            time.sleep(0.5)
        assert answers.index("OK") == replicas.index_of(leader), (role, answers, leader)
        if role == "reconcile":
            # One stored run per OK (no schedule here: interval_s = 0); refusals wrote none.
            runs_after = len(db(stack.dsn, "SELECT id FROM reconciliation_runs"))
            assert runs_after == runs_before + oks, (runs_before, oks, runs_after)
