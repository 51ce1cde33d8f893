"""Reconciliation end to end: core → EVM adapter (GetBalances, GetTransfers) →
anvil, against the ledger in PostgreSQL.

After payments, an overpayment refunded, a payout and a token sweep (gas
funding from the hot key, the deposit key sending to the treasury), a run
finds nothing unexplained. Funds sent to a deposit address behind Kassa's
back (an internal call of a contract, which the adapter does not stream) and
custody booked in the ledger with no chain counterpart (written here
through the ledger store, a path only a test has) are each reported as
unexplained, with a `reconciliation.mismatch` event and an exception entry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest

from core.ledger import store as ledger_store
from core.ledger.rules import Transfer
from kassa.core.v1 import (
    event_pb2,
    event_pb2_grpc,
    exception_pb2,
    exception_pb2_grpc,
    invoice_pb2,
    payout_pb2,
    payout_pb2_grpc,
    reconciliation_pb2,
    reconciliation_pb2_grpc,
)
from localstack.fullstack import LocalStack
from tests.support.kassactl import against, bootstrap_key
from tests.support.payouts import fresh_address, ledger_check, paid_invoice, wait_payout

FINAL = {
    payout_pb2.PAYOUT_STATE_CONFIRMED,
    payout_pb2.PAYOUT_STATE_FAILED,
    payout_pb2.PAYOUT_STATE_CANCELLED,
}
CONFIRMED = payout_pb2.PAYOUT_STATE_CONFIRMED
# A contract that forwards its call value to the address in its calldata:
# PUSH1 0 x4 (ret/args), CALLVALUE, PUSH1 0 CALLDATALOAD, GAS, CALL, STOP.
# The ETH it forwards moves by an internal call: no transaction pays the
# deposit address, so Kassa's block stream never sees it.
FORWARDER_CODE = "0x6000600060006000346000355af100"
SCOPES = "reconcile:read,reconcile:write,events:read,sweeps:read,sweeps:write"


@pytest.fixture(scope="module")
def platform_token(stack: LocalStack) -> str:
    return bootstrap_key(stack.dsn, SCOPES)


@pytest.fixture
def runs(
    stack: LocalStack, platform_token: str
) -> Iterator[reconciliation_pb2_grpc.ReconciliationServiceStub]:
    with stack.core_setup().channel(platform_token) as channel:
        yield reconciliation_pb2_grpc.ReconciliationServiceStub(channel)


async def _query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(stack: LocalStack, sql: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_query(stack.dsn, sql, *args))


def settle(stack: LocalStack, blocks: int = 6) -> None:
    """Mines `blocks` and waits until the core has applied the node's head."""
    if blocks:
        stack.anvil.mine(blocks)
    head = stack.anvil.head()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = query(stack, "SELECT height FROM chain_cursors WHERE chain = $1", stack.chain)
        if rows and rows[0]["height"] >= head:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the core never applied block {head}")


def reconcile(
    stack: LocalStack, runs: reconciliation_pb2_grpc.ReconciliationServiceStub, request_id: str = ""
) -> reconciliation_pb2.Reconciliation:
    request = reconciliation_pb2.RunReconciliationRequest(chain=stack.chain, request_id=request_id)
    return runs.RunReconciliation(request, timeout=120).reconciliation


def unexplained(run: reconciliation_pb2.Reconciliation) -> list[reconciliation_pb2.Difference]:
    return [d for d in run.differences if d.unexplained]


def describe(run: reconciliation_pb2.Reconciliation) -> str:
    """Every difference on one line each, for assertion messages."""
    return "\n".join(
        f"{d.location} {d.address} {d.asset} ledger={d.ledger_amount} chain={d.chain_amount} "
        f"unexplained={d.unexplained_amount} {d.tx_hash} {d.resource} {d.detail} "
        f"{[(e.kind, e.amount) for e in d.explanations]}"
        for d in run.differences
    )


def mismatch_events(stack: LocalStack, token: str) -> list[event_pb2.Event]:
    with stack.core_setup().channel(token) as channel:
        stub = event_pb2_grpc.EventServiceStub(channel)
        request = event_pb2.StreamEventsRequest(types=["reconciliation.mismatch"])
        found = []
        try:
            for response in stub.StreamEvents(request, timeout=3):
                found.append(response.event)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc  # type: ignore[attr-defined]
        return found


def open_exceptions(stack: LocalStack) -> list[asyncpg.Record]:
    return query(stack, "SELECT * FROM exceptions WHERE state = 'open' ORDER BY create_time")


def test_a_mix_of_payments_refunds_payouts_and_sweeps_reconciles_without_difference(
    stack: LocalStack, account, platform_token: str, runs
) -> None:
    parent, invoices, payouts = account
    settle(stack)
    # The first run opens the hot key's and the treasury's baselines (funded outside Kassa).
    first = reconcile(stack, runs)
    assert unexplained(first) == [], describe(first)
    opened = {(d.location, d.asset) for d in first.differences}
    native = f"{stack.chain}/slip44:60"
    assert {("hot", stack.token_asset), ("hot", native), ("treasury", native)} <= opened

    exact = paid_invoice(stack, invoices, parent)
    over = paid_invoice(stack, invoices, parent, pay_extra=3_000_000)
    assert over.state == invoice_pb2.INVOICE_STATE_OVERPAID
    refund = payouts.CreateRefund(
        payout_pb2.CreateRefundRequest(
            invoice=over.name, destination=fresh_address(), amount="3000000", request_id="rf-1"
        )
    ).payout
    payout = payouts.CreatePayout(
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=stack.token_asset, destination=fresh_address(), amount="5000000"
            ),
            request_id="po-1",
        )
    ).payout
    # Automine puts each in a block as it is broadcast; then exactly enough
    # blocks for both to confirm (3), so the payout, booked now, was mined
    # above the settled height (head - 3): a timing difference, explained.
    sent = {*FINAL, payout_pb2.PAYOUT_STATE_BROADCAST}
    for p in (refund, payout):
        wait_payout(stack, payouts, p.name, sent, mine=False)
    landed = wait_payout(stack, payouts, payout.name, sent, mine=False)
    receipt = stack.anvil.rpc.wait_receipt(landed.transactions[-1].tx_hash)
    stack.anvil.mine(max(0, int(receipt["blockNumber"], 16) + 2 - stack.anvil.head()))
    assert wait_payout(stack, payouts, refund.name, FINAL, mine=False).state == CONFIRMED
    assert wait_payout(stack, payouts, payout.name, FINAL, mine=False).state == CONFIRMED
    settle(stack, 0)
    between = reconcile(stack, runs)
    assert unexplained(between) == [], describe(between)
    assert between.height < int(receipt["blockNumber"], 16)
    explained = {
        (d.location, e.kind, e.resource) for d in between.differences for e in d.explanations
    }
    assert ("hot", "payout_booked_after_height", payout.name) in explained, describe(between)
    assert ("hot", "payout_fee_booked_after_height", payout.name) in explained, describe(between)
    with stack.core_setup().channel(platform_token) as channel:
        sweeps = payout_pb2_grpc.SweepServiceStub(channel)
        planned = sweeps.RunSweeps(payout_pb2.RunSweepsRequest(chain=stack.chain)).sweeps
        assert {s.source_address for s in planned if s.kind == payout_pb2.SWEEP_KIND_SWEEP} >= {
            exact.deposit_address.lower()
        }
        for s in planned:
            deadline = time.monotonic() + 60
            while sweeps.GetSweep(payout_pb2.GetSweepRequest(name=s.name)).sweep.state not in FINAL:
                assert time.monotonic() < deadline, s.name
                stack.anvil.mine(1)
                time.sleep(0.25)
    settle(stack)

    run = reconcile(stack, runs)
    assert unexplained(run) == [], describe(run)
    # Nothing is in flight any more: what differs is only the operator-funded float.
    kinds = {e.kind for d in run.differences for e in d.explanations}
    assert kinds == {"opening_balance"}, describe(run)
    assert {d.location for d in run.differences} <= {"hot", "treasury"}
    # Each deposit address in its asset and in native gas, the hot key and the treasury.
    assert run.balances_compared >= 2 * 2 + 2 * 2
    # Two payments, a refund, a payout, the gas fundings and sweeps: each proven against
    # its transaction (by one run or the other), and only once.
    proven = {r["resource"] for r in query(stack, "SELECT resource FROM reconciliation_proven")}
    assert {refund.name, payout.name, *(s.name for s in planned)} <= proven
    assert {f"{i.name}#1" for i in (exact, over)} <= proven
    assert between.transactions_compared + run.transactions_compared >= 4 + len(planned)
    assert run.height <= stack.anvil.head() - 3
    again = reconcile(stack, runs)
    assert unexplained(again) == [] and again.transactions_compared == 0
    assert mismatch_events(stack, platform_token) == []
    assert open_exceptions(stack) == []
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr


def test_run_is_idempotent_by_request_id_and_refuses_bad_input(
    stack: LocalStack, runs, platform_token: str
) -> None:
    first = reconcile(stack, runs, request_id="ops-1")
    assert reconcile(stack, runs, request_id="ops-1").name == first.name
    got = runs.GetReconciliation(reconciliation_pb2.GetReconciliationRequest(name=first.name))
    assert got.reconciliation == first
    listed = runs.ListReconciliations(
        reconciliation_pb2.ListReconciliationsRequest(chain=stack.chain, page_size=1)
    )
    assert [r.name for r in listed.reconciliations] == [first.name] and listed.next_page_token
    for request, field in [
        (reconciliation_pb2.RunReconciliationRequest(chain="eip155:999"), "chain"),
        (
            reconciliation_pb2.RunReconciliationRequest(chain=stack.chain, request_id="a b"),
            "request_id",
        ),
    ]:
        with pytest.raises(grpc.RpcError) as bad:
            runs.RunReconciliation(request)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert field in bad.value.details()  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as missing:
        runs.GetReconciliation(
            reconciliation_pb2.GetReconciliationRequest(name="reconciliations/" + "0" * 20)
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    # The attacker here holds a valid key without the scope: read-only keys
    # cannot start runs, and no merchant key can read them.
    reader = bootstrap_key(stack.dsn, "reconcile:read")
    with stack.core_setup().channel(reader) as channel:
        stub = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
        with pytest.raises(grpc.RpcError) as denied:
            stub.RunReconciliation(reconciliation_pb2.RunReconciliationRequest(chain=stack.chain))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    merchant = stack.core_setup().merchant_token("recon-outsider")
    with stack.core_setup().channel(merchant) as channel:
        stub = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
        with pytest.raises(grpc.RpcError) as denied:
            stub.GetReconciliation(reconciliation_pb2.GetReconciliationRequest(name=first.name))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    # kassactl: the same run by request id, JSON out, exit 0 when nothing is unexplained.
    cli = against(
        stack.core_setup(),
        "reconcile",
        "run",
        stack.chain,
        "--request-id",
        "ops-1",
        "--json",
        env={"KASSA_TOKEN": platform_token, "PATH": "/usr/bin:/bin"},
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["name"] == first.name


def test_funds_sent_behind_kassas_back_are_found_unexplained(
    stack: LocalStack, account, platform_token: str, runs
) -> None:
    parent, invoices, _ = account
    invoice = paid_invoice(stack, invoices, parent)
    deposit = invoice.deposit_address.lower()
    settle(stack)
    assert unexplained(reconcile(stack, runs)) == []

    forwarder = "0x" + "f0" * 20
    stack.anvil.rpc("anvil_setCode", forwarder, FORWARDER_CODE)
    sent = 10**16
    stack.anvil.rpc.wait_receipt(
        stack.anvil.rpc(
            "eth_sendTransaction",
            {
                "from": stack.customer,
                "to": forwarder,
                "value": hex(sent),
                "data": "0x" + deposit[2:].rjust(64, "0"),
            },
        )
    )
    assert int(stack.anvil.rpc("eth_getBalance", deposit, "latest"), 16) == sent
    settle(stack)
    # Kassa never saw it: the invoice is as it was.
    seen = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert seen.amount_received == invoice.amount_received

    run = reconcile(stack, runs)
    (d,) = unexplained(run)
    assert d.kind == reconciliation_pb2.DIFFERENCE_KIND_BALANCE
    assert (d.location, d.address, d.asset) == ("deposit", deposit, f"{stack.chain}/slip44:60")
    assert (d.ledger_amount, d.chain_amount, d.unexplained_amount) == ("0", str(sent), str(sent))
    assert run.unexplained_count == 1
    (entry,) = open_exceptions(stack)
    assert entry["kind"] == "reconciliation_mismatch" and entry["evidence"] == run.name
    assert deposit in entry["resource"] and int(entry["amount"]) == sent
    (event,) = mismatch_events(stack, platform_token)
    assert event.type == "reconciliation.mismatch" and event.reconciliation.name == run.name
    assert [x.address for x in event.reconciliation.differences if x.unexplained] == [deposit]
    # It persists in the next run without piling up exceptions or events.
    later = reconcile(stack, runs)
    assert [x.address for x in unexplained(later)] == [deposit]
    assert len(open_exceptions(stack)) == 1 and len(mismatch_events(stack, platform_token)) == 1
    cli = against(stack.core_setup(), "reconcile", "run", stack.chain, token=platform_token)
    assert cli.returncode == 2, cli.stderr


async def _phantom(dsn: str, transfers: list[Transfer]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            outcome = await ledger_store.post(conn, transfers, datetime.now(UTC))
        assert all(r.ok for r in outcome.results), outcome.results
    finally:
        await conn.close()


def test_ledger_custody_with_no_chain_counterpart_is_found_unexplained(
    stack: LocalStack, account, platform_token: str, runs
) -> None:
    parent, invoices, _ = account
    invoice = paid_invoice(stack, invoices, parent)
    deposit = invoice.deposit_address.lower()
    settle(stack)
    before = {(x.address, x.asset) for x in unexplained(reconcile(stack, runs))}
    custody = f"platform:custody:{stack.token_asset}"
    fees = f"platform:fees:{stack.token_asset}"
    asyncio.run(
        _phantom(
            stack.dsn,
            [
                # Booked against the invoice's deposit address, but nothing moved on chain.
                Transfer(
                    id="test:phantom:1",
                    debit_account_id=custody,
                    credit_account_id=fees,
                    amount=1_234,
                    asset=stack.token_asset,
                    code=1,
                    reference=invoice.name,
                ),
                # Booked to custody with no reference: no location accounts for it.
                Transfer(
                    id="test:phantom:2",
                    debit_account_id=custody,
                    credit_account_id=fees,
                    amount=55,
                    asset=stack.token_asset,
                    code=1,
                ),
            ],
        )
    )
    run = reconcile(stack, runs)
    new = [x for x in unexplained(run) if (x.address, x.asset) not in before]
    by_location = {(x.location, x.address): x for x in new}
    assert set(by_location) == {("deposit", deposit), ("ledger", "")}, run
    at_deposit = by_location[("deposit", deposit)]
    assert at_deposit.asset == stack.token_asset
    assert int(at_deposit.ledger_amount) == int(invoice.amount_received) + 1_234
    assert int(at_deposit.chain_amount) == int(invoice.amount_received)
    assert at_deposit.unexplained_amount == "-1234"
    unattributed = by_location[("ledger", "")]
    assert unattributed.kind == reconciliation_pb2.DIFFERENCE_KIND_UNATTRIBUTED
    assert unattributed.unexplained_amount == "-55"
    entries = [e for e in open_exceptions(stack) if e["evidence"] == run.name]
    assert {int(e["amount"]) for e in entries} == {-1_234, -55}
    events = [
        e for e in mismatch_events(stack, platform_token) if e.reconciliation.name == run.name
    ]
    assert len(events) == 1


def test_exceptions_are_listed_and_resolved_with_their_audit(
    stack: LocalStack, platform_token: str, runs
) -> None:
    admin = bootstrap_key(stack.dsn, "exceptions:read,exceptions:write,reconcile:write")
    with stack.core_setup().channel(admin) as channel:
        queue = exception_pb2_grpc.ExceptionServiceStub(channel)
        listed = queue.ListExceptions(exception_pb2.ListExceptionsRequest()).exceptions
        assert len(listed) == len(open_exceptions(stack)) >= 3
        assert [e.create_time.ToNanoseconds() for e in listed] == sorted(
            e.create_time.ToNanoseconds() for e in listed
        )
        native = f"{stack.chain}/slip44:60"
        behind = next(e for e in listed if "/deposit/" in e.resource and native in e.resource)
        assert behind.state == exception_pb2.EXCEPTION_STATE_OPEN and behind.evidence

        # Only a hot key's or treasury's gap can become a baseline.
        with pytest.raises(grpc.RpcError) as refused:
            queue.ResolveException(
                exception_pb2.ResolveExceptionRequest(
                    name=behind.name, action=exception_pb2.RESOLVE_ACTION_REBASELINE, reason="x"
                )
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as no_reason:
            queue.ResolveException(
                exception_pb2.ResolveExceptionRequest(
                    name=behind.name, action=exception_pb2.RESOLVE_ACTION_ACKNOWLEDGE, reason=" "
                )
            )
        assert no_reason.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]

        request = exception_pb2.ResolveExceptionRequest(
            name=behind.name,
            action=exception_pb2.RESOLVE_ACTION_ACKNOWLEDGE,
            reason="customer's contract wallet paid by internal call; refund ticket 42",
            request_id="ack-1",
        )
        done = queue.ResolveException(request).exception
        assert done.state == exception_pb2.EXCEPTION_STATE_RESOLVED
        assert done.resolve_reason == request.reason and done.resolve_actor.startswith(
            "merchants/-/"
        )
        assert done.resolve_time.seconds > 0
        assert queue.ResolveException(request).exception == done
        request.reason = "another"
        with pytest.raises(grpc.RpcError) as reused:
            queue.ResolveException(request)
        assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]
        resolved = queue.ListExceptions(
            exception_pb2.ListExceptionsRequest(state=exception_pb2.EXCEPTION_STATE_RESOLVED)
        ).exceptions
        assert [e.name for e in resolved] == [done.name]

        # Acknowledged: the same difference is still reported, but opens nothing new.
        run = reconcile(stack, runs)
        assert behind.resource.split("/")[2] in {d.address for d in unexplained(run)}
        assert behind.resource not in {e["resource"] for e in open_exceptions(stack)}

        # A top-up of the hot key outside Kassa: flagged, then accepted as the new baseline.
        hot = stack.hot_address
        balance = int(stack.anvil.rpc("eth_getBalance", hot, "latest"), 16)
        stack.anvil.rpc("anvil_setBalance", hot, hex(balance + 7 * 10**18))
        settle(stack)
        topped = reconcile(stack, runs)
        (gap,) = [d for d in unexplained(topped) if d.location == "hot"]
        assert (gap.asset, gap.unexplained_amount) == (native, str(7 * 10**18))
        entry = next(
            e
            for e in queue.ListExceptions(exception_pb2.ListExceptionsRequest()).exceptions
            if e.evidence == topped.name and "/hot/" in e.resource
        )
        queue.ResolveException(
            exception_pb2.ResolveExceptionRequest(
                name=entry.name,
                action=exception_pb2.RESOLVE_ACTION_REBASELINE,
                reason="treasury topped up the hot key, transfer approved by finance",
            )
        )
        after = reconcile(stack, runs)
        assert [d for d in unexplained(after) if d.location == "hot"] == []

    # A key that may read the queue may not resolve it.
    reader = bootstrap_key(stack.dsn, "exceptions:read")
    with stack.core_setup().channel(reader) as channel:
        queue = exception_pb2_grpc.ExceptionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as denied:
            queue.ResolveException(
                exception_pb2.ResolveExceptionRequest(
                    name=listed[-1].name,
                    action=exception_pb2.RESOLVE_ACTION_ACKNOWLEDGE,
                    reason="not mine to decide",
                )
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    cli = against(
        stack.core_setup(), "exceptions", "list", "--resolved", "--json", token=admin, timeout_s=60
    )
    assert cli.returncode == 0, cli.stderr
    assert {json.loads(line)["resolveAction"] for line in cli.stdout.splitlines()} == {
        "RESOLVE_ACTION_ACKNOWLEDGE",
        "RESOLVE_ACTION_REBASELINE",
    }


def test_an_incremental_run_compares_only_what_was_touched_since_the_last(
    stack: LocalStack, account, runs
) -> None:
    parent, invoices, _ = account
    old = paid_invoice(stack, invoices, parent)
    settle(stack)
    full = reconcile(stack, runs)
    assert not full.incremental and not full.since
    new = paid_invoice(stack, invoices, parent)
    # Behind Kassa's back, to the untouched address: an incremental run cannot see it.
    forwarder = "0x" + "f1" * 20
    stack.anvil.rpc("anvil_setCode", forwarder, FORWARDER_CODE)
    stack.anvil.rpc.wait_receipt(
        stack.anvil.rpc(
            "eth_sendTransaction",
            {
                "from": stack.customer,
                "to": forwarder,
                "value": hex(10**15),
                "data": "0x" + old.deposit_address.lower()[2:].rjust(64, "0"),
            },
        )
    )
    # Custody booked against the touched invoice with nothing on chain: it can.
    asyncio.run(
        _phantom(
            stack.dsn,
            [
                Transfer(
                    id="test:incremental:phantom",
                    debit_account_id=f"platform:custody:{stack.token_asset}",
                    credit_account_id=f"platform:fees:{stack.token_asset}",
                    amount=4_321,
                    asset=stack.token_asset,
                    code=1,
                    reference=new.name,
                )
            ],
        )
    )
    settle(stack)
    request = reconciliation_pb2.RunReconciliationRequest(chain=stack.chain, incremental=True)
    quick = runs.RunReconciliation(request, timeout=120).reconciliation
    assert quick.incremental and quick.since == full.name
    # (What it compares is told by what it finds: the touched address's
    # difference, not the untouched one's; the bench counts them at scale.)
    found = {(d.address, d.asset): d for d in unexplained(quick)}
    new_deposit, old_deposit = new.deposit_address.lower(), old.deposit_address.lower()
    assert found[(new_deposit, stack.token_asset)].unexplained_amount == "-4321"
    assert all(address != old_deposit for address, _ in found), describe(quick)
    # The next full run finds what the incremental one could not.
    later = reconcile(stack, runs)
    assert not later.incremental
    assert {(d.address, d.unexplained_amount) for d in unexplained(later)} >= {
        (old_deposit, str(10**15)),
        (new_deposit, "-4321"),
    }
    # An incremental run right after compares again what differed (re-checked).
    again = runs.RunReconciliation(request, timeout=120).reconciliation
    assert again.since == later.name
    assert {(d.address, d.unexplained_amount) for d in unexplained(again)} >= {
        (old_deposit, str(10**15)),
        (new_deposit, "-4321"),
    }


def test_an_adapter_that_is_down_is_unavailable_not_unknown(stack: LocalStack, runs) -> None:
    """Run last: it stops and restarts the chain's adapter."""
    stack.processes[f"evm-{stack.primary.chain_id}"].stop()
    try:
        with pytest.raises(grpc.RpcError) as down:
            reconcile(stack, runs)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert "DEPENDENCY_UNAVAILABLE" in str(down.value.trailing_metadata())  # type: ignore[attr-defined]
    finally:
        stack.start_adapter()
    settle(stack)
    # The restarted adapter serves once its node link is up; until then the
    # answer stays UNAVAILABLE (retryable), never anything else.
    deadline = time.monotonic() + 60
    while True:
        try:
            run = reconcile(stack, runs)
            break
        except grpc.RpcError as again:
            assert again.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the adapter never came back"
            time.sleep(0.5)
    assert run.height > 0
