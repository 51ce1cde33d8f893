"""LedgerService on a real core process: every refusal reason, idempotency,
two-phase transfers, pages and the statement export."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kassa.ledger.v1 import ledger_pb2 as pb
from kassa.ledger.v1 import ledger_pb2_grpc as pb_grpc
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup
from tests.support.config import XPUB
from tests.support.grpc_errors import rich

USDT = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
ETH = "eip155:31337/slip44:60"


@pytest.fixture(scope="module")
def ledger(
    tmp_path_factory: pytest.TempPathFactory, postgres
) -> Iterator[pb_grpc.LedgerServiceStub]:
    run_dir: Path = tmp_path_factory.mktemp("ledger-api")
    setup = CoreSetup(
        run_dir=run_dir,
        dsn=postgres.create_database("ledger_api"),
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        # No adapter runs here (API tests): invoices are taken on the unwatched chain.
        health={"invoices_need_chain": False},
        assets=[{"id": USDT, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
    )
    process: ManagedProcess = setup.process().start()
    with setup.channel(setup.admin_token()) as channel:
        stub = pb_grpc.LedgerServiceStub(channel)
        accounts = [
            pb.Account(id="world", asset=USDT, code=1),
            pb.Account(id="wallet", asset=USDT, code=2, debits_must_not_exceed_credits=True),
            pb.Account(id="capped", asset=USDT, code=3, credits_must_not_exceed_debits=True),
            pb.Account(id="shop", asset=USDT, code=4),
            pb.Account(id="eth", asset=ETH, code=5),
        ]
        results = stub.CreateAccounts(pb.CreateAccountsRequest(accounts=accounts)).results
        assert [r.reason for r in results] == [""] * len(accounts)
        yield stub
    assert process.stop() == 0


def create(stub: pb_grpc.LedgerServiceStub, *transfers: pb.Transfer) -> list[pb.CreateResult]:
    return list(stub.CreateTransfers(pb.CreateTransfersRequest(transfers=transfers)).results)


def reason(stub: pb_grpc.LedgerServiceStub, transfer: pb.Transfer) -> tuple[str, str]:
    result = create(stub, transfer)[0]
    return result.reason, result.field


def balances(stub: pb_grpc.LedgerServiceStub, account_id: str) -> tuple[str, str, str, str]:
    a = stub.GetAccount(pb.GetAccountRequest(id=account_id)).account
    return a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted


def test_accounts_are_idempotent_and_differences_are_named(ledger) -> None:
    again = ledger.CreateAccounts(
        pb.CreateAccountsRequest(accounts=[pb.Account(id="shop", asset=USDT, code=4)])
    ).results[0]
    assert again.existed and not again.reason
    other = ledger.CreateAccounts(
        pb.CreateAccountsRequest(accounts=[pb.Account(id="shop", asset=USDT, code=9)])
    ).results[0]
    assert (other.reason, other.field) == ("ID_EXISTS_WITH_DIFFERENT_FIELD", "code")
    both = ledger.CreateAccounts(
        pb.CreateAccountsRequest(
            accounts=[
                pb.Account(
                    id="bad",
                    asset=USDT,
                    debits_must_not_exceed_credits=True,
                    credits_must_not_exceed_debits=True,
                )
            ]
        )
    ).results[0]
    assert both.reason == "FLAGS_INVALID"


def test_a_transfer_posts_and_replays_and_refuses_another_body(ledger) -> None:
    t = pb.Transfer(id="fund-1", debit_account_id="world", credit_account_id="wallet", amount="100")
    assert create(ledger, t)[0].reason == ""
    assert create(ledger, t)[0].existed
    changed = pb.Transfer(
        id="fund-1", debit_account_id="world", credit_account_id="wallet", amount="101"
    )
    assert reason(ledger, changed) == ("ID_EXISTS_WITH_DIFFERENT_FIELD", "amount")
    assert balances(ledger, "wallet") == ("0", "0", "0", "100")


@pytest.mark.parametrize(
    ("transfer", "expected"),
    [
        (
            pb.Transfer(
                id="r1", debit_account_id="wallet", credit_account_id="shop", amount="10000"
            ),
            ("EXCEEDS_CREDITS", "debit_account_id"),
        ),
        (
            pb.Transfer(id="r2", debit_account_id="shop", credit_account_id="capped", amount="1"),
            ("EXCEEDS_DEBITS", "credit_account_id"),
        ),
        (
            pb.Transfer(id="r3", debit_account_id="world", credit_account_id="eth", amount="1"),
            ("ASSET_MISMATCH", "credit_account_id"),
        ),
        (
            pb.Transfer(id="r4", debit_account_id="world", credit_account_id="world", amount="1"),
            ("SAME_ACCOUNT", "credit_account_id"),
        ),
        (
            pb.Transfer(id="r5", debit_account_id="world", credit_account_id="nobody", amount="1"),
            ("ACCOUNT_NOT_FOUND", "credit_account_id"),
        ),
        (
            pb.Transfer(id="r6", debit_account_id="world", credit_account_id="shop", amount="0"),
            ("AMOUNT_INVALID", "amount"),
        ),
        (
            pb.Transfer(id="r7", post_pending=True, pending_id="nothing"),
            ("PENDING_NOT_FOUND", "pending_id"),
        ),
        (
            pb.Transfer(id="r8", post_pending=True, pending_id="fund-1"),
            ("PENDING_NOT_PENDING", "pending_id"),
        ),
        (pb.Transfer(id="r9", post_pending=True), ("PENDING_ID_REQUIRED", "pending_id")),
        (
            pb.Transfer(
                id="r10",
                debit_account_id="world",
                credit_account_id="shop",
                amount="1",
                timeout_s=5,
            ),
            ("TIMEOUT_INVALID", "timeout_s"),
        ),
    ],
)
def test_each_refusal_has_its_reason_and_writes_nothing(ledger, transfer, expected) -> None:
    before = balances(ledger, "world")
    assert reason(ledger, transfer) == expected
    assert balances(ledger, "world") == before


def test_two_phase_post_smaller_then_at_most_once(ledger) -> None:
    hold = pb.Transfer(
        id="hold-1", debit_account_id="world", credit_account_id="shop", amount="50", pending=True
    )
    assert create(ledger, hold)[0].reason == ""
    over = pb.Transfer(id="post-1", post_pending=True, pending_id="hold-1", amount="51")
    assert reason(ledger, over) == ("POST_EXCEEDS_PENDING", "amount")
    post = pb.Transfer(id="post-1", post_pending=True, pending_id="hold-1", amount="30")
    assert create(ledger, post)[0].reason == ""
    again = pb.Transfer(id="post-2", post_pending=True, pending_id="hold-1")
    assert reason(ledger, again)[0] == "PENDING_ALREADY_POSTED"
    void = pb.Transfer(id="void-1", void_pending=True, pending_id="hold-1")
    assert reason(ledger, void)[0] == "PENDING_ALREADY_POSTED"
    hold2 = pb.Transfer(
        id="hold-2", debit_account_id="world", credit_account_id="shop", amount="5", pending=True
    )
    create(ledger, hold2)
    assert (
        create(ledger, pb.Transfer(id="void-2", void_pending=True, pending_id="hold-2"))[0].reason
        == ""
    )
    post2 = pb.Transfer(id="post-3", post_pending=True, pending_id="hold-2")
    assert reason(ledger, post2)[0] == "PENDING_ALREADY_VOIDED"


def test_a_pending_transfer_expires_by_itself(ledger) -> None:
    hold = pb.Transfer(
        id="hold-exp",
        debit_account_id="world",
        credit_account_id="capped",
        amount="7",
        pending=True,
        timeout_s=1,
    )
    # capped may not be credited beyond its debits: fund it first.
    create(
        ledger,
        pb.Transfer(
            id="cap-fund", debit_account_id="capped", credit_account_id="world", amount="7"
        ),
    )
    assert create(ledger, hold)[0].reason == ""
    assert balances(ledger, "capped")[2] == "7"
    deadline = time.monotonic() + 10
    while balances(ledger, "capped")[2] != "0":  # the core's periodic expiry pass
        assert time.monotonic() < deadline, "pending transfer did not expire"
        time.sleep(0.2)
    late = pb.Transfer(id="post-exp", post_pending=True, pending_id="hold-exp")
    assert reason(ledger, late)[0] == "PENDING_EXPIRED"


def test_a_linked_chain_fails_as_one(ledger) -> None:
    before = balances(ledger, "shop")
    results = create(
        ledger,
        pb.Transfer(
            id="l1", debit_account_id="world", credit_account_id="shop", amount="1", linked=True
        ),
        pb.Transfer(id="l2", debit_account_id="wallet", credit_account_id="shop", amount="99999"),
    )
    assert [r.reason for r in results] == ["LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"]
    assert balances(ledger, "shop") == before
    open_chain = create(
        ledger,
        pb.Transfer(
            id="l3", debit_account_id="world", credit_account_id="shop", amount="1", linked=True
        ),
    )
    assert open_chain[0].reason == "LINKED_CHAIN_OPEN"


def test_bad_input_is_invalid_argument_naming_fields(ledger) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create(
            ledger,
            pb.Transfer(id="b1", debit_account_id="world", credit_account_id="shop", amount="1.5"),
            pb.Transfer(id="b2", pending=True, post_pending=True, pending_id="x", amount="1"),
        )
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["transfers[0].amount", "transfers[1]"]
    with pytest.raises(grpc.RpcError) as caught:
        ledger.GetAccount(pb.GetAccountRequest(id="nobody"))
    error = rich(caught.value)
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
        "kassa.ledger",
    )


def test_list_transfers_pages_and_statement_runs_a_balance(ledger) -> None:
    create(
        ledger,
        *[
            pb.Transfer(
                id=f"page-{i}",
                debit_account_id="world",
                credit_account_id="shop",
                amount=str(i + 1),
            )
            for i in range(5)
        ],
    )
    seen, token = [], ""
    while True:
        page = ledger.ListTransfers(
            pb.ListTransfersRequest(account_id="shop", page_size=2, page_token=token)
        )
        seen += [t.id for t in page.transfers]
        token = page.next_page_token
        if not token:
            break
    assert [s for s in seen if s.startswith("page-")] == [f"page-{i}" for i in range(5)]
    assert len(seen) == len(set(seen))
    text = b"".join(
        c.csv_chunk for c in ledger.ExportStatement(pb.ExportStatementRequest(account_id="shop"))
    ).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["kind"] == "opening"
    shop = ledger.GetAccount(pb.GetAccountRequest(id="shop")).account
    assert rows[-1]["balance"] == str(int(shop.credits_posted) - int(shop.debits_posted))
    assert rows[-1]["pending_balance"] == str(int(shop.credits_pending) - int(shop.debits_pending))
