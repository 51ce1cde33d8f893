"""The support queue end to end: every kind from a real scenario on anvil and
PostgreSQL (two chains, so a payment on the wrong network is real), each
resolved by a support action with its audit record; an action without its
scope is refused; a dangerous action needs a second, different operator.

The stack runs with `[support] require_second_approval = true`, payouts
counted stuck after 3 s and endpoints failing after 2 attempts.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from core.ledger import store as ledger_store
from core.ledger.rules import Transfer
from kassa.core.v1 import (
    exception_pb2,
    exception_pb2_grpc,
    invoice_pb2,
    invoice_pb2_grpc,
    payout_pb2,
    reconciliation_pb2,
    reconciliation_pb2_grpc,
    support_pb2,
    support_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from localstack.fullstack import LocalStack
from localstack.ports import free_port
from localstack.stack import MERCHANT_SCOPES
from tests.support.grpc_errors import rich
from tests.support.kassactl import against, bootstrap_key
from tests.support.metrics import scrape, value, wait_for
from tests.support.payouts import fresh_address, ledger_check, paid_invoice, wait_payout

K = support_pb2
OPERATOR = "support:read,support:write,support:accept,support:refund,reconcile:write"
APPROVER = "support:read,support:approve"
READER = "support:read,support:write"  # may note, may not accept nor refund
FINAL = {
    payout_pb2.PAYOUT_STATE_CONFIRMED,
    payout_pb2.PAYOUT_STATE_FAILED,
    payout_pb2.PAYOUT_STATE_CANCELLED,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    local = LocalStack(
        tmp_path_factory.mktemp("support"),
        chain_ids=(31337, 31338),
        block_time_s=None,
        postgres=postgres,
        core_options={
            "support": {
                "require_second_approval": True,
                "payout_stuck_after_s": 3,
                "webhook_failing_attempts": 2,
            },
            "webhooks": {
                "allow_private_targets": True,
                "initial_backoff_s": 0.2,
                "max_backoff_s": 0.5,
                "poll_interval_s": 0.2,
                "timeout_s": 2,
            },
        },
    )
    local.start_all()
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def bootstrap(stack: LocalStack, scopes: str) -> str:
    return bootstrap_key(stack.dsn, scopes)


@pytest.fixture(scope="module")
def tokens(stack: LocalStack) -> dict[str, str]:
    return {
        "operator": bootstrap(stack, OPERATOR),
        "approver": bootstrap(stack, APPROVER),
        "reader": bootstrap(stack, READER),
    }


@pytest.fixture(scope="module")
def desk(stack: LocalStack, tokens) -> Iterator[dict[str, support_pb2_grpc.SupportServiceStub]]:
    channels = {who: stack.core_setup().channel(token) for who, token in tokens.items()}
    yield {who: support_pb2_grpc.SupportServiceStub(c) for who, c in channels.items()}
    for c in channels.values():
        c.close()


def items(stub: support_pb2_grpc.SupportServiceStub, subject: str) -> dict[int, K.SupportItem]:
    """Every item about `subject`, by kind (the whole queue, page by page)."""
    found: dict[int, K.SupportItem] = {}
    token = ""
    while True:
        page = stub.ListSupportItems(K.ListSupportItemsRequest(page_token=token, page_size=50))
        for i in page.items:
            if i.subject == subject:
                assert i.kind not in found, page
                found[i.kind] = i
        token = page.next_page_token
        if not token:
            return found


def wait_item(
    stack: LocalStack, stub, subject: str, kind: int, present: bool = True, timeout_s: float = 30
) -> K.SupportItem | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = items(stub, subject).get(kind)
        if (got is not None) == present:
            return got
        time.sleep(0.3)
    raise TimeoutError(f"{subject}: {K.ItemKind.Name(kind)} never {'came' if present else 'left'}")


def audit(stub, subject: str) -> list[K.SupportAction]:
    return list(stub.ListSupportActions(K.ListSupportActionsRequest(subject=subject)).actions)


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    got = rich(caught.value)
    return got.code, got.reason


def pay(stack: LocalStack, address: str, amount: int, chain: int = 0) -> str:
    c = stack.chains[chain]
    tx = c.token.transfer(c.customer, address, amount)
    c.anvil.rpc.wait_receipt(tx)
    return tx


def wait_invoice(invoices, name: str, state: int, timeout_s: float = 30) -> invoice_pb2.Invoice:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=name)).invoice
        if got.state == state:
            return got
        time.sleep(0.2)
    raise TimeoutError(f"{name} never reached {invoice_pb2.InvoiceState.Name(state)}: {got}")


def underpaid_invoice(stack: LocalStack, invoices, parent: str) -> invoice_pb2.Invoice:
    invoice = invoices.CreateInvoice(
        invoice_pb2.CreateInvoiceRequest(
            parent=parent,
            merchant_order_id=f"short-{time.monotonic_ns()}",
            asset=stack.token_asset,
            ttl_seconds=3,
            price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
        )
    ).invoice
    pay(stack, invoice.deposit_address, int(invoice.amount_due) // 2)
    stack.anvil.mine(3)
    return wait_invoice(invoices, invoice.name, invoice_pb2.INVOICE_STATE_UNDERPAID)


def kassactl(stack: LocalStack, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kassactl against the stack's core, the key from the environment (never on the line)."""
    return against(
        stack.core_setup(), *args, timeout_s=60, env={"KASSA_TOKEN": token, "PATH": "/usr/bin:/bin"}
    )


def test_underpaid_accepted_as_paid_needs_its_scope_and_a_second_operator(
    stack: LocalStack, account, desk, tokens
) -> None:
    parent, invoices, _ = account
    port = stack.core_setup().metrics_port
    before = scrape(port)
    underpaid_before = value(before, "kassa_support_queue_items", kind="invoice_underpaid")
    approvals_before = value(before, "kassa_support_actions_pending_approval")
    invoice = underpaid_invoice(stack, invoices, parent)
    item = wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID)
    assert item is not None
    # The metrics sampler counts the queue with the same reads and decider.
    shown = wait_for(
        port,
        lambda m: (
            value(m, "kassa_support_queue_items", kind="invoice_underpaid") == underpaid_before + 1
        ),
        what="the underpaid invoice in kassa_support_queue_items",
    )
    assert value(shown, "kassa_support_queue_oldest_age_seconds", kind="invoice_underpaid") >= 0
    assert (
        "kassa_support_queue_oldest_age_seconds",
        frozenset({("kind", "invoice_underpaid")}),
    ) in (shown)
    assert int(item.amount) == int(invoice.amount_due) - int(invoice.amount_received)
    assert list(item.actions)[:2] == [K.ACTION_TYPE_ACCEPT_AS_PAID, K.ACTION_TYPE_REQUEST_TOP_UP]
    assert K.ACTION_TYPE_REFUND_WHOLE in item.actions
    evidence = {(e.type, e.ref) for e in item.evidence}
    assert ("transaction", invoice.payments[0].tx_hash) in evidence
    assert "invoice.underpaid" in {e.detail for e in item.evidence if e.type == "event"}
    assert item.age_seconds >= 0 and item.since_time.seconds > 0

    accept = K.AcceptAsPaidRequest(
        subject=invoice.name, reason="customer paid the rest by bank", request_id="acc-1"
    )
    # Without support:accept: refused, and nothing recorded.
    assert refused(lambda: desk["reader"].AcceptAsPaid(accept)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SCOPE_MISSING",
    )
    assert audit(desk["reader"], invoice.name) == []
    # Bad input: every field named, nothing recorded.
    with pytest.raises(grpc.RpcError) as bad:
        desk["operator"].AcceptAsPaid(K.AcceptAsPaidRequest(subject="invoices/x", reason=" "))
    assert rich(bad.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(rich(bad.value).fields) >= {"subject", "reason"}

    pending = desk["operator"].AcceptAsPaid(accept).action
    assert pending.state == K.SUPPORT_ACTION_STATE_PENDING_APPROVAL
    wait_for(
        port,
        lambda m: value(m, "kassa_support_actions_pending_approval") == approvals_before + 1,
        what="the pending action in kassa_support_actions_pending_approval",
    )
    assert pending.action == K.ACTION_TYPE_ACCEPT_AS_PAID and pending.reason == accept.reason
    got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert got.state == invoice_pb2.INVOICE_STATE_UNDERPAID  # nothing happened yet
    # The same operator cannot approve it (even holding the scope would not help).
    assert refused(
        lambda: desk["operator"].ApproveSupportAction(
            K.ApproveSupportActionRequest(name=pending.name)
        )
    ) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")
    both = bootstrap(stack, "support:read,support:accept,support:approve")
    with stack.core_setup().channel(both) as channel:
        self_approver = support_pb2_grpc.SupportServiceStub(channel)
        mine = self_approver.AcceptAsPaid(
            K.AcceptAsPaidRequest(subject=invoice.name, reason="my own", request_id="acc-self")
        ).action
        assert refused(
            lambda: self_approver.ApproveSupportAction(
                K.ApproveSupportActionRequest(name=mine.name)
            )
        ) == (grpc.StatusCode.PERMISSION_DENIED, "SUPPORT_APPROVER_IS_REQUESTER")
    done = (
        desk["approver"]
        .ApproveSupportAction(K.ApproveSupportActionRequest(name=pending.name))
        .action
    )
    assert done.state == K.SUPPORT_ACTION_STATE_DONE
    assert done.approver and done.approver != done.actor and done.approve_time.seconds > 0
    paid = wait_invoice(invoices, invoice.name, invoice_pb2.INVOICE_STATE_PAID)
    assert invoice_pb2.INVOICE_FLAG_MARKED in paid.flags
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID, present=False)
    # Accepted as paid: it leaves the queue's metric too.
    wait_for(
        port,
        lambda m: (
            value(m, "kassa_support_queue_items", kind="invoice_underpaid") == underpaid_before
        ),
        what="the accepted invoice out of kassa_support_queue_items",
    )
    # The other operator's pending action on the same invoice no longer applies.
    assert refused(
        lambda: desk["approver"].ApproveSupportAction(K.ApproveSupportActionRequest(name=mine.name))
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "SUPPORT_ACTION_NOT_APPLICABLE")
    # Idempotent: the same request answers the same action; another body is refused.
    again = desk["operator"].AcceptAsPaid(accept).action
    assert again.name == pending.name and again.state == K.SUPPORT_ACTION_STATE_DONE
    other = K.AcceptAsPaidRequest(subject=invoice.name, reason="other", request_id="acc-1")
    assert refused(lambda: desk["operator"].AcceptAsPaid(other)) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )
    trail = audit(desk["reader"], invoice.name)
    assert [(a.name, a.state) for a in trail][-1] == (pending.name, K.SUPPORT_ACTION_STATE_DONE)
    assert {a.actor for a in trail} >= {done.actor}
    assert ledger_check(stack).returncode == 0


def test_pending_action_rejected_or_withdrawn_is_never_performed(
    stack: LocalStack, account, desk, tokens
) -> None:
    parent, invoices, _ = account
    invoice = underpaid_invoice(stack, invoices, parent)
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID)
    ask = K.AcceptAsPaidRequest(subject=invoice.name, reason="customer called", request_id="dc-1")
    first = desk["operator"].AcceptAsPaid(ask).action
    assert first.state == K.SUPPORT_ACTION_STATE_PENDING_APPROVAL

    def decline(who: str, name: str, reason: str) -> K.SupportAction:
        request = K.DeclineSupportActionRequest(name=name, reason=reason)
        return desk[who].DeclineSupportAction(request).action

    # Bad input is named field by field, whoever asks.
    with pytest.raises(grpc.RpcError) as bad:
        desk["approver"].DeclineSupportAction(
            K.DeclineSupportActionRequest(name="supportActions/nope", reason=" ")
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(rich(bad.value).fields) == {"name", "reason"}
    # Rejecting another operator's action takes support:approve.
    assert refused(lambda: decline("reader", first.name, "not mine")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SCOPE_MISSING",
    )
    rejected = decline("approver", first.name, "no proof of payment")
    assert rejected.state == K.SUPPORT_ACTION_STATE_REJECTED
    assert rejected.decider and rejected.decider != rejected.actor == first.actor
    assert rejected.decide_reason == "no proof of payment" and rejected.decide_time.seconds > 0
    assert not rejected.approver
    # A retry answers the same record; anything else about it is too late.
    assert decline("approver", first.name, "no proof of payment") == rejected
    for late in (
        lambda: desk["approver"].ApproveSupportAction(
            K.ApproveSupportActionRequest(name=first.name)
        ),
        lambda: decline("operator", first.name, "withdrawing"),
        lambda: decline("approver", first.name, "another reason"),
    ):
        assert refused(late) == (grpc.StatusCode.FAILED_PRECONDITION, "SUPPORT_ACTION_NOT_PENDING")
    # The same request id answers the rejected action; it does not ask again.
    assert desk["operator"].AcceptAsPaid(ask).action.name == first.name

    # Withdrawn by the operator who asked: no approval scope needed for one's own.
    second = (
        desk["operator"]
        .AcceptAsPaid(
            K.AcceptAsPaidRequest(subject=invoice.name, reason="again", request_id="dc-2")
        )
        .action
    )
    withdrawn = decline("operator", second.name, "asked the wrong invoice")
    assert withdrawn.state == K.SUPPORT_ACTION_STATE_WITHDRAWN
    assert withdrawn.decider == withdrawn.actor == second.actor
    assert refused(
        lambda: desk["approver"].ApproveSupportAction(
            K.ApproveSupportActionRequest(name=second.name)
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "SUPPORT_ACTION_NOT_PENDING")

    # kassactl declines too (a third request, rejected from the command line).
    third = (
        desk["operator"]
        .AcceptAsPaid(
            K.AcceptAsPaidRequest(subject=invoice.name, reason="third", request_id="dc-3")
        )
        .action
    )
    out = kassactl(
        stack, tokens["approver"], "support", "decline", third.name, "--reason", "duplicate ask"
    )
    assert out.returncode == 0, out.stderr
    assert "REJECTED" in out.stdout.upper() and third.name in out.stdout

    # Nothing was performed: the invoice is still underpaid, unmarked, in the queue.
    got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert got.state == invoice_pb2.INVOICE_STATE_UNDERPAID
    assert invoice_pb2.INVOICE_FLAG_MARKED not in got.flags
    assert K.ITEM_KIND_INVOICE_UNDERPAID in items(desk["reader"], invoice.name)
    trail = {a.name: a.state for a in audit(desk["reader"], invoice.name)}
    assert trail == {
        first.name: K.SUPPORT_ACTION_STATE_REJECTED,
        second.name: K.SUPPORT_ACTION_STATE_WITHDRAWN,
        third.name: K.SUPPORT_ACTION_STATE_REJECTED,
    }
    assert ledger_check(stack).returncode == 0


def _approve_and_reject_at_once(
    stub: support_pb2_grpc.SupportServiceStub, name: str
) -> dict[str, object]:
    """Each call's answer: the action, or (code, reason) when refused."""
    answers: dict[str, object] = {}
    go = threading.Barrier(2)
    calls: dict[str, Callable[[], K.SupportAction]] = {
        "approve": lambda: (
            stub.ApproveSupportAction(K.ApproveSupportActionRequest(name=name)).action
        ),
        "reject": lambda: (
            stub.DeclineSupportAction(
                K.DeclineSupportActionRequest(name=name, reason="race")
            ).action
        ),
    }

    def send(which: str) -> None:
        go.wait()
        try:
            answers[which] = calls[which]()
        except grpc.RpcError as e:
            answers[which] = (e.code(), rich(e).reason)

    threads = [threading.Thread(target=send, args=(which,)) for which in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def test_approval_racing_a_decline_ends_one_way_whole(stack: LocalStack, account, desk) -> None:
    """An approval and a rejection sent at once: exactly one wins, and the
    invoice is marked paid if and only if the approval did."""
    parent, invoices, _ = account
    for round_ in range(3):
        invoice = underpaid_invoice(stack, invoices, parent)
        wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID)
        pending = (
            desk["operator"]
            .AcceptAsPaid(
                K.AcceptAsPaidRequest(
                    subject=invoice.name, reason="race", request_id=f"rc-{round_}"
                )
            )
            .action
        )
        answers = _approve_and_reject_at_once(desk["approver"], pending.name)
        lost = (grpc.StatusCode.FAILED_PRECONDITION, "SUPPORT_ACTION_NOT_PENDING")
        approved = isinstance(answers["approve"], K.SupportAction)
        assert approved != isinstance(answers["reject"], K.SupportAction), answers
        assert answers["reject" if approved else "approve"] == lost, answers
        final = audit(desk["reader"], invoice.name)[0]
        assert final.name == pending.name
        got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
        if approved:
            assert final.state == K.SUPPORT_ACTION_STATE_DONE
            got = wait_invoice(invoices, invoice.name, invoice_pb2.INVOICE_STATE_PAID)
            assert invoice_pb2.INVOICE_FLAG_MARKED in got.flags
        else:
            assert final.state == K.SUPPORT_ACTION_STATE_REJECTED
            assert got.state == invoice_pb2.INVOICE_STATE_UNDERPAID
    assert ledger_check(stack).returncode == 0


def test_underpaid_top_up_requested_then_paid_late_acknowledged(
    stack: LocalStack, account, desk
) -> None:
    parent, invoices, _ = account
    invoice = underpaid_invoice(stack, invoices, parent)
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID)
    asked = (
        desk["reader"]
        .RequestTopUp(K.RequestTopUpRequest(subject=invoice.name, reason="emailed the customer"))
        .action
    )
    assert asked.state == K.SUPPORT_ACTION_STATE_DONE
    assert int(asked.amount) == int(invoice.amount_due) - int(invoice.amount_received)
    # Waiting for the customer: out of the queue.
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID, present=False)
    pay(stack, invoice.deposit_address, int(invoice.amount_due) - int(invoice.amount_received))
    stack.anvil.mine(3)
    paid = wait_invoice(invoices, invoice.name, invoice_pb2.INVOICE_STATE_PAID)
    assert invoice_pb2.INVOICE_FLAG_PAID_LATE in paid.flags
    late = wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_PAID_LATE)
    assert late is not None and late.amount == invoice.amount_due
    ack = (
        desk["reader"]
        .Acknowledge(
            K.AcknowledgeRequest(
                subject=invoice.name, kind=K.ITEM_KIND_INVOICE_PAID_LATE, reason="late but complete"
            )
        )
        .action
    )
    assert ack.state == K.SUPPORT_ACTION_STATE_DONE
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_PAID_LATE, present=False)
    assert [a.action for a in audit(desk["reader"], invoice.name)] == [
        K.ACTION_TYPE_ACKNOWLEDGE,
        K.ACTION_TYPE_REQUEST_TOP_UP,
    ]


def _refund_approved(stack, desk, payouts, subject: str, kind: int, scope: int) -> str:
    to = fresh_address()
    request = K.RefundInvoiceRequest(
        subject=subject, kind=kind, scope=scope, destination=to, reason="customer asked"
    )
    assert refused(lambda: desk["reader"].RefundInvoice(request)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SCOPE_MISSING",
    )
    pending = desk["operator"].RefundInvoice(request).action
    assert pending.state == K.SUPPORT_ACTION_STATE_PENDING_APPROVAL
    assert stack.token.balance_of(to) == 0
    done = (
        desk["approver"]
        .ApproveSupportAction(K.ApproveSupportActionRequest(name=pending.name))
        .action
    )
    assert done.state == K.SUPPORT_ACTION_STATE_DONE and done.result.startswith(
        subject.split("/invoices/")[0] + "/payouts/"
    )
    confirmed = wait_payout(stack, payouts, done.result, FINAL)
    assert confirmed.state == payout_pb2.PAYOUT_STATE_CONFIRMED
    assert stack.token.balance_of(to) == int(done.amount) > 0
    return done.amount


def test_underpaid_refunded_whole_after_approval(stack: LocalStack, account, desk) -> None:
    parent, invoices, payouts = account
    invoice = underpaid_invoice(stack, invoices, parent)
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID)
    refunded = _refund_approved(
        stack, desk, payouts, invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID, K.REFUND_SCOPE_WHOLE
    )
    assert refunded == invoice.amount_received
    wait_invoice(invoices, invoice.name, invoice_pb2.INVOICE_STATE_REFUNDED)
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_UNDERPAID, present=False)
    [record] = audit(desk["reader"], invoice.name)
    assert record.action == K.ACTION_TYPE_REFUND_WHOLE and record.approver
    assert ledger_check(stack).returncode == 0


def test_overpaid_excess_refunded_after_approval(stack: LocalStack, account, desk) -> None:
    parent, invoices, payouts = account
    over = paid_invoice(stack, invoices, parent, pay_extra=2_000_000)
    item = wait_item(stack, desk["reader"], over.name, K.ITEM_KIND_INVOICE_OVERPAID)
    assert item is not None and item.amount == "2000000"
    assert K.ACTION_TYPE_REFUND_EXCESS in item.actions
    # Accepting as paid is not offered for an overpaid invoice.
    assert refused(
        lambda: desk["operator"].AcceptAsPaid(K.AcceptAsPaidRequest(subject=over.name, reason="x"))
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "SUPPORT_ACTION_NOT_APPLICABLE")
    refunded = _refund_approved(
        stack, desk, payouts, over.name, K.ITEM_KIND_INVOICE_OVERPAID, K.REFUND_SCOPE_EXCESS
    )
    assert refunded == "2000000"
    wait_item(stack, desk["reader"], over.name, K.ITEM_KIND_INVOICE_OVERPAID, present=False)
    assert ledger_check(stack).returncode == 0


def test_duplicate_reviewed_with_an_attachment_then_refunded(
    stack: LocalStack, account, desk
) -> None:
    parent, invoices, payouts = account
    invoice = paid_invoice(stack, invoices, parent)
    second = pay(stack, invoice.deposit_address, int(invoice.amount_due))
    stack.anvil.mine(3)
    wait_invoice(invoices, invoice.name, invoice_pb2.INVOICE_STATE_OVERPAID)
    item = wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_DUPLICATE)
    assert item is not None and item.amount == invoice.amount_due
    assert K.ITEM_KIND_INVOICE_OVERPAID not in items(desk["reader"], invoice.name)
    desk["reader"].MarkForReview(
        K.MarkForReviewRequest(
            subject=invoice.name, kind=K.ITEM_KIND_INVOICE_DUPLICATE, reason="two orders?"
        )
    )
    desk["reader"].AttachTransaction(
        K.AttachTransactionRequest(
            subject=invoice.name,
            kind=K.ITEM_KIND_INVOICE_DUPLICATE,
            tx_hash=second,
            reason="the customer's second transfer",
        )
    )
    reviewed = items(desk["reader"], invoice.name)[K.ITEM_KIND_INVOICE_DUPLICATE]
    assert reviewed.review_actor and reviewed.review_reason == "two orders?"
    assert ("attachment", second.lower()) in {(e.type, e.ref) for e in reviewed.evidence}
    _refund_approved(
        stack, desk, payouts, invoice.name, K.ITEM_KIND_INVOICE_DUPLICATE, K.REFUND_SCOPE_EXCESS
    )
    wait_item(stack, desk["reader"], invoice.name, K.ITEM_KIND_INVOICE_DUPLICATE, present=False)
    kinds = [a.action for a in audit(desk["reader"], invoice.name)]
    assert kinds == [
        K.ACTION_TYPE_REFUND_EXCESS,
        K.ACTION_TYPE_ATTACH_TRANSACTION,
        K.ACTION_TYPE_MARK_FOR_REVIEW,
    ]


def test_wrong_asset_and_wrong_network_are_told_apart_and_acknowledged(
    stack: LocalStack, account, desk
) -> None:
    parent, invoices, _ = account
    one = stack.chains[0]

    def create(order: str) -> invoice_pb2.Invoice:
        return invoices.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=parent,
                merchant_order_id=order,
                asset=one.token_asset,
                price=invoice_pb2.FiatAmount(amount="10.00", currency="USD"),
            )
        ).invoice

    asset, network = create("wrong-asset"), create("wrong-network")
    eth = one.anvil.rpc(
        "eth_sendTransaction",
        {"from": one.customer, "to": asset.deposit_address, "value": hex(10**16)},
    )
    one.anvil.rpc.wait_receipt(eth)
    # Chain two's token to an address of an invoice on chain one (valid on both).
    cross = pay(stack, network.deposit_address, int(network.amount_due), chain=1)
    got = wait_item(stack, desk["reader"], asset.name, K.ITEM_KIND_INVOICE_WRONG_ASSET)
    assert got is not None and ("transaction", eth) in {(e.type, e.ref) for e in got.evidence}
    assert K.ITEM_KIND_INVOICE_WRONG_NETWORK not in items(desk["reader"], asset.name)
    net = wait_item(stack, desk["reader"], network.name, K.ITEM_KIND_INVOICE_WRONG_NETWORK)
    assert net is not None and ("transaction", cross) in {(e.type, e.ref) for e in net.evidence}
    assert K.ITEM_KIND_INVOICE_WRONG_ASSET not in items(desk["reader"], network.name)
    for invoice, kind in (
        (asset, K.ITEM_KIND_INVOICE_WRONG_ASSET),
        (network, K.ITEM_KIND_INVOICE_WRONG_NETWORK),
    ):
        desk["reader"].Acknowledge(
            K.AcknowledgeRequest(
                subject=invoice.name, kind=kind, reason="customer refunded off-platform"
            )
        )
        wait_item(stack, desk["reader"], invoice.name, kind, present=False)
        [record] = audit(desk["reader"], invoice.name)
        assert record.kind == kind and record.reason == "customer refunded off-platform"


def test_payouts_waiting_for_approval_and_stuck(stack: LocalStack, account, desk) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent, price_usd="1500.00")

    def create(amount: int) -> payout_pb2.Payout:
        return payouts.CreatePayout(
            payout_pb2.CreatePayoutRequest(
                parent=parent,
                payout=payout_pb2.Payout(
                    asset=stack.token_asset, destination=fresh_address(), amount=str(amount)
                ),
            )
        ).payout

    big = create(1_200_000_000)
    wait_payout(stack, payouts, big.name, {payout_pb2.PAYOUT_STATE_WAITING_APPROVAL})
    waiting = wait_item(stack, desk["reader"], big.name, K.ITEM_KIND_PAYOUT_WAITING_APPROVAL)
    assert waiting is not None and waiting.amount == "1200000000"
    desk["reader"].MarkForReview(
        K.MarkForReviewRequest(
            subject=big.name, kind=K.ITEM_KIND_PAYOUT_WAITING_APPROVAL, reason="call the CFO"
        )
    )
    assert items(desk["reader"], big.name)[K.ITEM_KIND_PAYOUT_WAITING_APPROVAL].review_actor
    payouts.CancelPayout(payout_pb2.CancelPayoutRequest(name=big.name))
    wait_item(stack, desk["reader"], big.name, K.ITEM_KIND_PAYOUT_WAITING_APPROVAL, present=False)
    # Another, approved by both approvers with kassactl: it leaves the queue and confirms.
    other = create(1_100_000_000)
    wait_payout(stack, payouts, other.name, {payout_pb2.PAYOUT_STATE_WAITING_APPROVAL})
    wait_item(stack, desk["reader"], other.name, K.ITEM_KIND_PAYOUT_WAITING_APPROVAL)
    approver_token = bootstrap(stack, "payouts:read,payouts:approve")
    for who, key in stack.approvers.items():
        key_file = stack.run_dir / f"approver-{who}.key"
        key_file.write_text(
            key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
        )
        key_file.chmod(0o600)
        approved = kassactl(
            stack,
            approver_token,
            "payouts",
            "approve",
            other.name,
            "--approver-key-id",
            who,
            "--key-file",
            str(key_file),
        )
        assert approved.returncode == 0, approved.stderr
        assert "approving 1100000000" in approved.stderr
    wait_item(stack, desk["reader"], other.name, K.ITEM_KIND_PAYOUT_WAITING_APPROVAL, present=False)
    assert wait_payout(stack, payouts, other.name, FINAL).state == (
        payout_pb2.PAYOUT_STATE_CONFIRMED
    )

    # Broadcast (automine lands it) but never confirmed: no block is mined.
    small = create(1_000_000)
    sent = wait_payout(stack, payouts, small.name, {payout_pb2.PAYOUT_STATE_BROADCAST}, mine=False)
    stuck = wait_item(stack, desk["reader"], small.name, K.ITEM_KIND_PAYOUT_STUCK)
    assert stuck is not None and stuck.age_seconds >= 3
    tx = sent.transactions[-1].tx_hash
    assert ("transaction", tx) in {(e.type, e.ref) for e in stuck.evidence}
    desk["reader"].AttachTransaction(
        K.AttachTransactionRequest(
            subject=small.name, kind=K.ITEM_KIND_PAYOUT_STUCK, tx_hash=tx, reason="on chain"
        )
    )
    desk["reader"].Acknowledge(
        K.AcknowledgeRequest(
            subject=small.name, kind=K.ITEM_KIND_PAYOUT_STUCK, reason="waiting for blocks"
        )
    )
    wait_item(stack, desk["reader"], small.name, K.ITEM_KIND_PAYOUT_STUCK, present=False)
    assert wait_payout(stack, payouts, small.name, FINAL).state == (
        payout_pb2.PAYOUT_STATE_CONFIRMED
    )
    assert [a.action for a in audit(desk["reader"], small.name)] == [
        K.ACTION_TYPE_ACKNOWLEDGE,
        K.ACTION_TYPE_ATTACH_TRANSACTION,
    ]


class ToggleReceiver:
    """A webhook receiver on 127.0.0.1 that answers 500 until told to accept."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepting = False
        self.accepted = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                ok = receiver.accepting
                receiver.accepted += ok
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def test_a_failing_webhook_endpoint_is_redelivered(stack: LocalStack, desk) -> None:
    parent = "merchants/support-hooks"
    token = stack.core_setup().merchant_token(
        "support-hooks", (*MERCHANT_SCOPES, "webhooks:read", "webhooks:write")
    )
    receiver = ToggleReceiver()
    try:
        with stack.core_setup().channel(token) as channel:
            hooks = webhook_pb2_grpc.WebhookServiceStub(channel)
            endpoint = hooks.CreateWebhookEndpoint(
                webhook_pb2.CreateWebhookEndpointRequest(
                    parent=parent, webhook_endpoint=webhook_pb2.WebhookEndpoint(url=receiver.url())
                )
            ).webhook_endpoint
            invoice_pb2_grpc.InvoiceServiceStub(channel).CreateInvoice(
                invoice_pb2.CreateInvoiceRequest(
                    parent=parent,
                    merchant_order_id="hooked",
                    asset=stack.token_asset,
                    price=invoice_pb2.FiatAmount(amount="5.00", currency="USD"),
                )
            )
        failing = wait_item(
            stack, desk["reader"], endpoint.name, K.ITEM_KIND_WEBHOOK_ENDPOINT_FAILING
        )
        assert failing is not None
        deliveries = [e for e in failing.evidence if e.type == "delivery"]
        assert deliveries and "invoice.created" in deliveries[0].detail
        assert "HTTP 500" in deliveries[0].detail
        receiver.accepting = True
        redone = (
            desk["reader"]
            .RedeliverFailedWebhooks(
                K.RedeliverFailedWebhooksRequest(subject=endpoint.name, reason="receiver fixed")
            )
            .action
        )
        assert redone.state == K.SUPPORT_ACTION_STATE_DONE and "queued" in redone.result
        wait_item(
            stack,
            desk["reader"],
            endpoint.name,
            K.ITEM_KIND_WEBHOOK_ENDPOINT_FAILING,
            present=False,
        )
        assert receiver.accepted >= 1
        [record] = audit(desk["reader"], endpoint.name)
        assert record.action == K.ACTION_TYPE_REDELIVER_WEBHOOKS
    finally:
        receiver.server.shutdown()


async def _phantom(dsn: str, transfer: Transfer) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            outcome = await ledger_store.post(conn, [transfer], datetime.now(UTC))
        assert all(r.ok for r in outcome.results), outcome.results
    finally:
        await conn.close()


def settle(stack: LocalStack, blocks: int = 6) -> None:
    """Mines `blocks` and waits until the core has applied the node's head."""
    stack.anvil.mine(blocks)
    head = stack.anvil.head()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if asyncio.run(_applied_height(stack.dsn, stack.chain)) >= head:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the core never applied block {head}")


async def _applied_height(dsn: str, chain: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        height = await conn.fetchval("SELECT height FROM chain_cursors WHERE chain = $1", chain)
        return -1 if height is None else int(height)
    finally:
        await conn.close()


def run_reconciliation(stack: LocalStack, token: str) -> reconciliation_pb2.Reconciliation:
    with stack.core_setup().channel(token) as channel:
        runs = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                return runs.RunReconciliation(
                    reconciliation_pb2.RunReconciliationRequest(chain=stack.chain), timeout=120
                ).reconciliation
            except grpc.RpcError as exc:
                # The core may not have applied a settled height of its own yet.
                if time.monotonic() > deadline or exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                    raise
                stack.anvil.mine(3)
                time.sleep(0.5)


def _phantom_mismatch(
    stack: LocalStack, account, desk, tokens, transfer_id: str, amount: int
) -> list[K.SupportItem]:
    """A paid invoice's custody booked `amount` higher with nothing on chain (a
    test-only path), reconciled: the queue's mismatch items of -amount."""
    parent, invoices, _ = account
    invoice = paid_invoice(stack, invoices, parent)
    settle(stack)
    asset = stack.token_asset
    asyncio.run(
        _phantom(
            stack.dsn,
            Transfer(
                id=transfer_id,
                debit_account_id=f"platform:custody:{asset}",
                credit_account_id=f"platform:fees:{asset}",
                amount=amount,
                asset=asset,
                code=1,
                reference=invoice.name,
            ),
        )
    )
    run_reconciliation(stack, tokens["operator"])
    return [
        i
        for i in desk["reader"]
        .ListSupportItems(
            K.ListSupportItemsRequest(kinds=[K.ITEM_KIND_RECONCILIATION_MISMATCH], page_size=100)
        )
        .items
        if i.amount == str(-amount)
    ]


def test_a_reconciliation_mismatch_is_acknowledged_through_the_queue(
    stack: LocalStack, account, desk, tokens
) -> None:
    mismatches = _phantom_mismatch(stack, account, desk, tokens, "test:support:phantom", 777)
    assert len(mismatches) == 1, mismatches
    [mismatch] = mismatches
    assert mismatch.subject.startswith("exceptions/")
    assert mismatch.evidence[0].type == "reconciliation"
    assert mismatch.evidence[0].ref.startswith("reconciliations/")
    desk["reader"].Acknowledge(
        K.AcknowledgeRequest(
            subject=mismatch.subject,
            kind=K.ITEM_KIND_RECONCILIATION_MISMATCH,
            reason="test booking, known",
        )
    )
    wait_item(
        stack, desk["reader"], mismatch.subject, K.ITEM_KIND_RECONCILIATION_MISMATCH, present=False
    )
    rows = asyncio.run(_rows(stack.dsn, mismatch.subject.split("/")[1]))
    assert rows[0]["state"] == "resolved" and rows[0]["resolve_action"] == "acknowledge"
    assert rows[0]["resolve_reason"] == "test booking, known"


def test_a_hot_key_gap_is_rebaselined_only_with_a_second_operator(
    stack: LocalStack, account, desk, tokens
) -> None:
    # Funds reach the hot key outside Kassa: the next run flags the gap.
    hot, native = stack.hot_address, f"{stack.chain}/slip44:60"
    balance = int(stack.anvil.rpc("eth_getBalance", hot, "latest"), 16)
    stack.anvil.rpc("anvil_setBalance", hot, hex(balance + 7 * 10**18))
    settle(stack)
    run = run_reconciliation(stack, tokens["operator"])
    gaps = [d for d in run.differences if d.unexplained and d.location == "hot"]
    assert [(d.asset, d.unexplained_amount) for d in gaps] == [(native, str(7 * 10**18))]
    [item] = [
        i
        for i in desk["reader"]
        .ListSupportItems(
            K.ListSupportItemsRequest(kinds=[K.ITEM_KIND_RECONCILIATION_MISMATCH], page_size=100)
        )
        .items
        if i.amount == str(7 * 10**18)
    ]
    assert K.ACTION_TYPE_REBASELINE in item.actions
    finance = bootstrap(stack, "support:read,exceptions:read,exceptions:write")
    with stack.core_setup().channel(finance) as channel:
        # One operator alone can no longer accept a gap as normal, by either door.
        direct = exception_pb2_grpc.ExceptionServiceStub(channel)
        assert refused(
            lambda: direct.ResolveException(
                exception_pb2.ResolveExceptionRequest(
                    name=item.subject,
                    action=exception_pb2.RESOLVE_ACTION_REBASELINE,
                    reason="topped up by treasury",
                )
            )
        ) == (grpc.StatusCode.FAILED_PRECONDITION, "REBASELINE_NEEDS_APPROVAL")
        ask = K.RebaselineRequest(
            subject=item.subject, reason="topped up by treasury, ticket FIN-7", request_id="rb-1"
        )
        pending = support_pb2_grpc.SupportServiceStub(channel).Rebaseline(ask).action
    assert pending.state == K.SUPPORT_ACTION_STATE_PENDING_APPROVAL
    assert pending.action == K.ACTION_TYPE_REBASELINE
    # The scope is the one that resolves exceptions: support:write alone is not enough.
    assert refused(lambda: desk["reader"].Rebaseline(ask)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SCOPE_MISSING",
    )
    # Pending is not done: the gap is still unexplained.
    still = run_reconciliation(stack, tokens["operator"])
    assert "hot" in [d.location for d in still.differences if d.unexplained]
    done = (
        desk["approver"]
        .ApproveSupportAction(K.ApproveSupportActionRequest(name=pending.name))
        .action
    )
    assert done.state == K.SUPPORT_ACTION_STATE_DONE and done.amount == str(7 * 10**18)
    entry = asyncio.run(_rows(stack.dsn, item.subject.split("/")[1]))[0]
    assert (entry["state"], entry["resolve_action"]) == ("resolved", "rebaseline")
    assert entry["resolve_actor"] == f"{pending.actor} approved by {done.approver}"
    after = run_reconciliation(stack, tokens["operator"])
    assert [d for d in after.differences if d.unexplained and d.location == "hot"] == []
    # A deposit address's gap belongs to its invoice: never re-baselined.
    [deposit] = _phantom_mismatch(stack, account, desk, tokens, "test:support:phantom-2", 555)
    assert K.ACTION_TYPE_REBASELINE not in deposit.actions
    with stack.core_setup().channel(finance) as channel:
        again = K.RebaselineRequest(subject=deposit.subject, reason="make it go away")
        assert refused(lambda: support_pb2_grpc.SupportServiceStub(channel).Rebaseline(again)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "SUPPORT_ACTION_NOT_APPLICABLE",
        )


async def _rows(dsn: str, exception_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch("SELECT * FROM exceptions WHERE id = $1", exception_id))
    finally:
        await conn.close()


def test_kassactl_shows_the_queue_and_the_audit_as_tables_and_json(
    stack: LocalStack, account, tokens
) -> None:
    parent, invoices, _ = account
    invoice = underpaid_invoice(stack, invoices, parent)
    table = kassactl(stack, tokens["reader"], "support", "queue")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:3] == ["KIND", "SUBJECT", "AGE"], table.stdout
    assert any(
        invoice.name in line and "invoice_underpaid" in line for line in table.stdout.splitlines()
    )
    listed = kassactl(stack, tokens["reader"], "support", "queue", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert any(r["subject"] == invoice.name for r in rows)
    noted = kassactl(
        stack,
        tokens["reader"],
        "support",
        "review",
        invoice.name,
        "--kind",
        "invoice_underpaid",
        "--reason",
        "looking",
        "--json",
    )
    assert noted.returncode == 0, noted.stderr
    assert json.loads(noted.stdout)["action"] == "ACTION_TYPE_MARK_FOR_REVIEW"
    refused = kassactl(
        stack, tokens["reader"], "support", "accept", invoice.name, "--reason", "no scope"
    )
    assert refused.returncode == 1 and "SCOPE_MISSING" in refused.stderr
    assert tokens["reader"] not in refused.stderr + refused.stdout
    trail = kassactl(stack, tokens["reader"], "support", "audit", "--subject", invoice.name)
    assert trail.returncode == 0 and "mark_for_review" in trail.stdout, trail.stdout


def test_the_queue_pages_without_losing_or_repeating_an_item(
    stack: LocalStack, account, desk
) -> None:
    parent, invoices, _ = account
    for _ in range(3):
        underpaid_invoice(stack, invoices, parent)
    # Items whose presence depends on the clock (a payout turning stuck) are left out.
    steady = [k for k in K.ItemKind.values() if k not in (0, K.ITEM_KIND_PAYOUT_STUCK)]

    def listing(page_size: int) -> list[tuple[str, int]]:
        seen, token, pages = [], "", 0
        while True:
            page = desk["reader"].ListSupportItems(
                K.ListSupportItemsRequest(kinds=steady, page_size=page_size, page_token=token)
            )
            seen += [(i.subject, i.kind) for i in page.items]
            pages += 1
            token = page.next_page_token
            if not token:
                return seen
            assert pages < 1_000

    whole = listing(500)
    assert len(whole) >= 3 and len(set(whole)) == len(whole)
    one_by_one = listing(1)
    assert one_by_one == whole  # the same items in the same order, none twice
    with pytest.raises(grpc.RpcError) as forged:
        desk["reader"].ListSupportItems(K.ListSupportItemsRequest(page_token="forged"))
    assert rich(forged.value).fields == ["page_token"]


def test_kassactl_exports_a_merchants_statement_of_real_payments_and_lists_merchants(
    stack: LocalStack, account
) -> None:
    parent, invoices, _ = account
    before = datetime.now(UTC).isoformat()
    paid = [paid_invoice(stack, invoices, parent, price) for price in ("25.00", "10.00")]
    reader = bootstrap(stack, "ledger:read,merchants:admin")
    export = kassactl(
        stack,
        reader,
        "statements",
        "export",
        "--merchant",
        parent,
        "--asset",
        stack.token_asset,
        "--from",
        before,
    )
    assert export.returncode == 0, export.stderr
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    incoming = f"merchant:{parent.removeprefix('merchants/')}:{stack.token_asset}:incoming"
    assert incoming in {r["account_id"] for r in rows}
    for invoice in paid:
        mine = [r for r in rows if r["reference"] == invoice.name]
        assert mine, f"{invoice.name} is not on the statement"
        # Every transfer of an invoice carries its fiat value at the invoice's quote.
        assert {r["fiat_currency"] for r in mine} == {"USD"}
        payment = [
            r
            for r in mine
            if r["account_id"] == incoming and r["side"] == "credit" and r["kind"] != "post"
        ]
        assert [r["amount"] for r in payment] == [invoice.amount_received]
        assert payment[0]["fiat_value"] == invoice.price.amount
    # The period before the payments: opening rows only, every balance zero.
    earlier = kassactl(
        stack,
        reader,
        "statements",
        "export",
        "--merchant",
        parent,
        "--asset",
        stack.token_asset,
        "--to",
        before,
    )
    assert earlier.returncode == 0, earlier.stderr
    opening = list(csv.DictReader(io.StringIO(earlier.stdout)))
    assert {(r["kind"], r["balance"]) for r in opening} == {("opening", "0")}
    listed = kassactl(stack, reader, "merchants", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert parent in [json.loads(line)["name"] for line in listed.stdout.splitlines()]
