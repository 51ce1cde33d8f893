"""kassactl's statements and merchant listing against a real core: one
account's statement, and each of a merchant's accounts for a period, with the
fiat value of the transfers that reference an invoice (its quoted rate) and
none for the rest; a merchant's accounts listed by prefix (ListAccounts);
ListMerchants paged, through the API and kassactl."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from core.ledger.accounts import NEVER_NEGATIVE, custody, merchant_account, merchant_accounts
from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc, merchant_pb2, merchant_pb2_grpc
from kassa.ledger.v1 import ledger_pb2 as pb
from kassa.ledger.v1 import ledger_pb2_grpc as pb_grpc
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup
from tests.support.config import XPUB
from tests.support.grpc_errors import rich
from tests.support.kassactl import against, bootstrap_key

TUSD = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
OTHER = "eip155:31337/erc20:0x00000000000000000000000000000000000000bb"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[CoreSetup]:
    run_dir: Path = tmp_path_factory.mktemp("ctl-statements")
    setup = CoreSetup(
        run_dir=run_dir,
        dsn=postgres.create_database("ctl_statements"),
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        health={"invoices_need_chain": False},
        assets=[{"id": TUSD, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.25"},
    )
    process: ManagedProcess = setup.process().start()
    yield setup
    assert process.stop() == 0


@pytest.fixture(scope="module")
def paid(core: CoreSetup) -> str:
    """Merchant shop's invoice, paid and settled as the payment postings do
    (custody -> incoming -> available, referencing the invoice), plus one
    transfer that references no invoice. Returns the invoice's name."""
    core.merchant_token("shop")
    with core.channel(core.admin_token()) as channel:
        invoice = (
            invoice_pb2_grpc.InvoiceServiceStub(channel)
            .CreateInvoice(
                invoice_pb2.CreateInvoiceRequest(
                    parent="merchants/shop",
                    merchant_order_id="order-1",
                    asset=TUSD,
                    price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
                )
            )
            .invoice
        )
        assert invoice.amount_due == "20000000"  # 25.00 USD at 1.25 USD per TUSD
        ledger = pb_grpc.LedgerServiceStub(channel)
        accounts = [
            pb.Account(
                id=a.id,
                asset=a.asset,
                code=a.code,
                debits_must_not_exceed_credits=bool(a.flags & NEVER_NEGATIVE),
                credits_must_not_exceed_debits=bool(a.flags & ~NEVER_NEGATIVE & 0b11),
            )
            for a in merchant_accounts("shop", TUSD)
        ]
        accounts.append(pb.Account(id=custody(TUSD), asset=TUSD, code=1001))
        results = ledger.CreateAccounts(pb.CreateAccountsRequest(accounts=accounts)).results
        assert [r.reason for r in results] == [""] * len(accounts)
        incoming = merchant_account("shop", TUSD, "incoming")
        available = merchant_account("shop", TUSD, "available")
        transfers = [
            pb.Transfer(
                id="pay-1",
                debit_account_id=custody(TUSD),
                credit_account_id=incoming,
                amount="20000000",
                reference=invoice.name,
            ),
            pb.Transfer(
                id="settle-1",
                debit_account_id=incoming,
                credit_account_id=available,
                amount="20000000",
                reference=invoice.name,
            ),
            pb.Transfer(
                id="adjust-1",
                debit_account_id=custody(TUSD),
                credit_account_id=available,
                amount="5",
            ),
        ]
        results = ledger.CreateTransfers(pb.CreateTransfersRequest(transfers=transfers)).results
        assert [r.reason for r in results] == [""] * len(transfers)
    return str(invoice.name)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_one_account_statement_to_a_file_with_fiat_where_a_rate_was_recorded(
    core: CoreSetup, paid: str, tmp_path: Path
) -> None:
    out = tmp_path / "available.csv"
    account = merchant_account("shop", TUSD, "available")
    result = against(
        core,
        "statements",
        "export",
        "--account",
        account,
        "--out",
        str(out),
        token=core.admin_token(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    rows = _rows(out.read_text())
    assert [r["kind"] for r in rows] == ["opening", "transfer", "transfer"]
    settle, adjust = rows[1], rows[2]
    assert (settle["transfer_id"], settle["reference"], settle["amount"]) == (
        "settle-1",
        paid,
        "20000000",
    )
    # The invoice's quoted rate (1.25 USD per TUSD): 20 TUSD is 25.00 USD.
    assert (settle["fiat_currency"], settle["fiat_value"]) == ("USD", "25.00")
    # No invoice, no recorded rate: the value stays empty rather than guessed.
    assert (adjust["transfer_id"], adjust["fiat_currency"], adjust["fiat_value"]) == (
        "adjust-1",
        "",
        "",
    )
    assert adjust["balance"] == "20000005"


def test_a_merchant_statement_covers_each_of_its_accounts_for_the_period(
    core: CoreSetup, paid: str
) -> None:
    result = against(
        core,
        "statements",
        "export",
        "--merchant",
        "merchants/shop",
        "--asset",
        TUSD,
        "--asset",
        OTHER,
        token=core.admin_token(),
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    assert result.stdout.splitlines()[0].startswith("account_id,seq,create_time,")
    by_account: dict[str, list[str]] = {}
    for r in rows:
        by_account.setdefault(r["account_id"], []).append(r["transfer_id"])
    # Every opened account of the merchant in TUSD (payouts_in_flight was never
    # opened; OTHER has none): each with its opening row, its transfers in order.
    assert by_account == {
        merchant_account("shop", TUSD, "available"): ["", "settle-1", "adjust-1"],
        merchant_account("shop", TUSD, "incoming"): ["", "pay-1", "settle-1"],
        merchant_account("shop", TUSD, "receivable"): [""],
        merchant_account("shop", TUSD, "refunds_payable"): [""],
    }
    pay = next(r for r in rows if r["transfer_id"] == "pay-1")
    assert (pay["fiat_currency"], pay["fiat_value"], pay["reference"]) == ("USD", "25.00", paid)
    # A period after every transfer: the opening balances carry them, no rows.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    result = against(
        core,
        "statements",
        "export",
        "--merchant",
        "shop",
        "--asset",
        TUSD,
        "--from",
        later,
        token=core.admin_token(),
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    assert {r["kind"] for r in rows} == {"opening"}
    opening = {r["account_id"]: r["balance"] for r in rows}
    assert opening[merchant_account("shop", TUSD, "available")] == "20000005"
    assert opening[merchant_account("shop", TUSD, "incoming")] == "0"


def test_a_merchant_without_accounts_in_the_assets_and_a_missing_scope_fail(
    core: CoreSetup, paid: str
) -> None:
    none = against(
        core,
        "statements",
        "export",
        "--merchant",
        "shop",
        "--asset",
        OTHER,
        token=core.admin_token(),
    )
    assert none.returncode == 1 and none.stdout == ""
    assert "no accounts in these assets" in none.stderr
    reader = core.merchant_token("shop", ("invoices:read",))
    refused = against(
        core,
        "statements",
        "export",
        "--account",
        merchant_account("shop", TUSD, "available"),
        token=reader,
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert "PERMISSION_DENIED" in refused.stderr and reader not in refused.stderr


def test_list_accounts_by_prefix_paged_and_guarded(core: CoreSetup, paid: str) -> None:
    with core.channel(core.admin_token()) as channel:
        ledger = pb_grpc.LedgerServiceStub(channel)
        # Another merchant whose id extends "shop" must not show under "merchant:shop:".
        other = merchant_account("shop2", TUSD, "available")
        made = ledger.CreateAccounts(
            pb.CreateAccountsRequest(accounts=[pb.Account(id=other, asset=TUSD, code=2001)])
        ).results
        assert [r.reason for r in made] == [""]
        shop = sorted(a.id for a in merchant_accounts("shop", TUSD))
        pages: list[list[str]] = []
        token = ""
        while True:
            page = ledger.ListAccounts(
                pb.ListAccountsRequest(id_prefix="merchant:shop:", page_size=2, page_token=token)
            )
            pages.append([a.id for a in page.accounts])
            token = page.next_page_token
            if not token:
                break
        assert [i for p in pages for i in p] == shop and all(len(p) <= 2 for p in pages)
        assert len(pages) == (len(shop) + 1) // 2
        one = ledger.ListAccounts(pb.ListAccountsRequest(id_prefix=shop[0])).accounts
        assert [(a.id, a.asset, a.code) for a in one] == [(shop[0], TUSD, 2001)]
        assert one[0].debits_must_not_exceed_credits  # available never goes negative
        everything = {a.id for a in ledger.ListAccounts(pb.ListAccountsRequest()).accounts}
        assert everything >= {*shop, other, custody(TUSD)}
        # A token is bound to its prefix; sizes and prefixes are bounded.
        first = ledger.ListAccounts(pb.ListAccountsRequest(id_prefix="merchant:", page_size=1))
        with pytest.raises(grpc.RpcError) as caught:
            ledger.ListAccounts(
                pb.ListAccountsRequest(
                    id_prefix="platform:", page_token=first.next_page_token, page_size=1001
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(rich(caught.value).fields) == {"page_token", "page_size"}
        with pytest.raises(grpc.RpcError) as caught:
            ledger.ListAccounts(pb.ListAccountsRequest(id_prefix="x" * 257))
        assert rich(caught.value).fields == ["id_prefix"]
    # Merchant keys cannot read the ledger.
    with core.channel(core.merchant_token("shop", ("invoices:read",))) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.LedgerServiceStub(channel).ListAccounts(pb.ListAccountsRequest())
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_merchant_statement_without_assets_covers_every_account_it_has(
    core: CoreSetup, paid: str
) -> None:
    result = against(core, "statements", "export", "--merchant", "shop", token=core.admin_token())
    assert result.returncode == 0, result.stderr
    accounts = {r["account_id"] for r in _rows(result.stdout)}
    assert accounts == {a.id for a in merchant_accounts("shop", TUSD)}
    nobody = against(core, "statements", "export", "--merchant", "nobody", token=core.admin_token())
    assert nobody.returncode == 1 and nobody.stdout == ""
    assert "the merchant has no accounts at all" in nobody.stderr


PAGED = [f"pg-{i:02d}" for i in range(57)]


@pytest.fixture(scope="module")
def many_merchants(core: CoreSetup, paid: str) -> list[str]:
    """More merchants than one default page (50) holds."""
    with core.channel(core.admin_token()) as channel:
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        for m in reversed(PAGED):  # created out of id order: the listing orders them
            stub.CreateMerchant(merchant_pb2.CreateMerchantRequest(merchant_id=m, display_name=m))
    return sorted([*PAGED, "shop"])


def test_list_merchants_pages_by_id_without_losing_or_repeating_one(
    core: CoreSetup, many_merchants: list[str]
) -> None:
    with core.channel(core.admin_token()) as channel:
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        seen: list[str] = []
        token, pages = "", 0
        while True:
            page = stub.ListMerchants(
                merchant_pb2.ListMerchantsRequest(page_size=7, page_token=token)
            )
            assert len(page.merchants) <= 7
            seen += [m.name.removeprefix("merchants/") for m in page.merchants]
            token, pages = page.next_page_token, pages + 1
            if not token:
                break
        assert seen == many_merchants and pages == -(-len(many_merchants) // 7)
        # Bad input names the field and is refused before any read.
        for request, field in (
            (merchant_pb2.ListMerchantsRequest(page_size=-1), "page_size"),
            (merchant_pb2.ListMerchantsRequest(page_token="pg-10.AAAA"), "page_token"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListMerchants(request)
            error = rich(caught.value)
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.fields == [field]
        first = stub.ListMerchants(merchant_pb2.ListMerchantsRequest(page_size=2))
    # The attacker: another key replaying a token it was not given.
    other_admin = bootstrap_key(core.dsn, "merchants:admin")
    with core.channel(other_admin) as channel:
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListMerchants(merchant_pb2.ListMerchantsRequest(page_token=first.next_page_token))
        assert rich(caught.value).fields == ["page_token"]
    # A merchant's own key, whatever its scopes, lists no merchants.
    with core.channel(core.merchant_token("shop")) as channel:
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListMerchants(merchant_pb2.ListMerchantsRequest())
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_kassactl_merchants_list_follows_every_page_as_a_table_and_json(
    core: CoreSetup, many_merchants: list[str]
) -> None:
    token = core.admin_token()
    listed = against(core, "merchants", "list", "--json", token=token)
    assert listed.returncode == 0, listed.stderr
    names = [json.loads(line)["name"] for line in listed.stdout.splitlines()]
    assert names == [f"merchants/{m}" for m in many_merchants]  # 58: two pages of 50
    table = against(core, "merchants", "list", token=token)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "DISPLAY", "NAME"]
    assert [line.split()[0] for line in lines[1:]] == names
    assert token not in table.stdout + table.stderr
