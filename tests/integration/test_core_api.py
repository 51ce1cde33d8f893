"""InvoiceService and EventService against a real core process and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from core.chain.hd import DepositAddresses
from kassa.core.v1 import event_pb2, event_pb2_grpc, invoice_pb2, invoice_pb2_grpc
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup
from tests.grpc_errors import rich

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[CoreSetup]:
    run_dir: Path = tmp_path_factory.mktemp("core-api")
    setup = CoreSetup(
        run_dir=run_dir,
        dsn=postgres.create_database("core_api"),
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
    )
    process: ManagedProcess = setup.process().start()
    yield setup
    assert process.stop() == 0, "core did not stop cleanly on SIGTERM"


@pytest.fixture
def invoices(core: CoreSetup) -> Iterator[invoice_pb2_grpc.InvoiceServiceStub]:
    with grpc.insecure_channel(core.target) as channel:
        yield invoice_pb2_grpc.InvoiceServiceStub(channel)


def counts(dsn: str) -> tuple[int, int]:
    async def query() -> tuple[int, int]:
        conn = await asyncpg.connect(dsn)
        try:
            return (
                await conn.fetchval("SELECT count(*) FROM invoices"),
                await conn.fetchval("SELECT count(*) FROM events"),
            )
        finally:
            await conn.close()

    return asyncio.run(query())


def usd(amount: str = "25.00", **kw: object) -> invoice_pb2.CreateInvoiceRequest:
    fields: dict[str, object] = {
        "parent": "merchants/acme",
        "merchant_order_id": "order-1",
        "asset": TOKEN,
        "price": invoice_pb2.FiatAmount(amount=amount, currency="USD"),
    }
    fields.update(kw)
    return invoice_pb2.CreateInvoiceRequest(**fields)  # type: ignore[arg-type]


def test_create_invoice_locks_a_quote_and_derives_a_deposit_address(invoices, core) -> None:
    invoice = invoices.CreateInvoice(usd()).invoice
    assert invoice.amount_due == "25000000"
    assert invoice.state == invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT
    assert invoice.quote.rate == "1.00" and invoice.quote.source == "fixed"
    assert invoice.price.amount == "25.00" and invoice.price.currency == "USD"
    assert invoice.network == "eip155:31337" and invoice.confirmations_required == 2
    derived = DepositAddresses(XPUB)
    assert invoice.deposit_address in {derived.address(i) for i in range(50)}
    fetched = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
    assert fetched == invoice


def test_deposit_addresses_are_never_reused(invoices) -> None:
    addresses = {
        invoices.CreateInvoice(usd(merchant_order_id=f"o{i}")).invoice.deposit_address
        for i in range(5)
    }
    assert len(addresses) == 5


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (usd(asset="eip155:31337/erc20:0x00000000000000000000000000000000000000bb"), "asset"),
        (usd(amount="-5"), "price.amount"),
        (usd(amount="ten"), "price.amount"),
        (usd(merchant_order_id=""), "merchant_order_id"),
        (usd(parent="acme"), "parent"),
        (
            invoice_pb2.CreateInvoiceRequest(
                parent="merchants/acme", merchant_order_id="x", asset=TOKEN, asset_amount="1.5"
            ),
            "asset_amount",
        ),
        (
            invoice_pb2.CreateInvoiceRequest(
                parent="merchants/acme", merchant_order_id="x", asset=TOKEN
            ),
            "amount",
        ),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field_and_writes_nothing(
    invoices, core, request_, field
) -> None:
    before = counts(core.dsn)
    with pytest.raises(grpc.RpcError) as caught:
        invoices.CreateInvoice(request_)
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT" and error.domain == "kassa.core"
    assert field in error.fields
    assert counts(core.dsn) == before


def test_all_bad_fields_are_named_at_once(invoices) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        invoices.CreateInvoice(usd(amount="-1", merchant_order_id="", asset="nope"))
    assert set(rich(caught.value).fields) >= {"price.amount", "merchant_order_id", "asset"}


def test_unquoted_currency_is_refused_without_writing(invoices, core) -> None:
    before = counts(core.dsn)
    with pytest.raises(grpc.RpcError) as caught:
        invoices.CreateInvoice(usd(price=invoice_pb2.FiatAmount(amount="5", currency="EUR")))
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "NO_RATE"
    assert counts(core.dsn) == before


def test_request_id_makes_create_idempotent(invoices, core) -> None:
    first = invoices.CreateInvoice(usd(request_id="req-42")).invoice
    before = counts(core.dsn)
    again = invoices.CreateInvoice(usd(request_id="req-42")).invoice
    assert again.name == first.name and again.deposit_address == first.deposit_address
    assert counts(core.dsn) == before
    with pytest.raises(grpc.RpcError) as caught:
        invoices.CreateInvoice(usd(request_id="req-42", amount="26.00"))
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS and error.reason == "REQUEST_ID_REUSED"


def test_get_unknown_invoice_is_not_found(invoices) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name="merchants/acme/invoices/ffff"))
    assert rich(caught.value).reason == "INVOICE_NOT_FOUND"


def test_list_pages_through_every_invoice_once_newest_first(invoices) -> None:
    names = [
        invoices.CreateInvoice(
            usd(parent="merchants/pager", merchant_order_id=f"p{i}")
        ).invoice.name
        for i in range(7)
    ]
    seen: list[str] = []
    token = ""
    while True:
        page = invoices.ListInvoices(
            invoice_pb2.ListInvoicesRequest(parent="merchants/pager", page_size=3, page_token=token)
        )
        assert len(page.invoices) <= 3
        seen += [i.name for i in page.invoices]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(names))
    with pytest.raises(grpc.RpcError) as caught:
        invoices.ListInvoices(
            invoice_pb2.ListInvoicesRequest(parent="merchants/pager", page_token="garbage!")
        )
    assert "page_token" in rich(caught.value).fields


def test_events_stream_in_order_and_resume_after_a_cursor(invoices, core) -> None:
    created = [
        invoices.CreateInvoice(
            usd(parent="merchants/stream", merchant_order_id=f"s{i}")
        ).invoice.name
        for i in range(3)
    ]
    with grpc.insecure_channel(core.target) as channel:
        stub = event_pb2_grpc.EventServiceStub(channel)

        def take(after: int, n: int) -> list[event_pb2.Event]:
            stream = stub.StreamEvents(
                event_pb2.StreamEventsRequest(parent="merchants/stream", after_sequence=after)
            )
            got = [next(stream).event for _ in range(n)]
            stream.cancel()
            return got

        events = take(0, 3)
        assert [e.invoice.name for e in events] == created
        assert all(e.type == "invoice.created" for e in events)
        sequences = [e.sequence for e in events]
        assert sequences == sorted(sequences)
        resumed = take(sequences[0], 2)
        assert [e.sequence for e in resumed] == sequences[1:]
        # A live follower sees an event committed after it subscribed.
        stream = stub.StreamEvents(
            event_pb2.StreamEventsRequest(parent="merchants/stream", after_sequence=sequences[-1])
        )
        late = invoices.CreateInvoice(
            usd(parent="merchants/stream", merchant_order_id="late")
        ).invoice
        started = time.monotonic()
        assert next(stream).event.invoice.name == late.name
        assert time.monotonic() - started < 2.0
        stream.cancel()


def test_unpaid_invoice_expires_with_an_event(invoices, core) -> None:
    invoice = invoices.CreateInvoice(
        usd(parent="merchants/expiry", merchant_order_id="e1", ttl_seconds=1)
    ).invoice
    with grpc.insecure_channel(core.target) as channel:
        stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
            event_pb2.StreamEventsRequest(parent="merchants/expiry", types=["invoice.expired"]),
            timeout=10,
        )
        event = next(stream).event
        stream.cancel()
    assert event.invoice.name == invoice.name
    assert event.invoice.state == invoice_pb2.INVOICE_STATE_EXPIRED
    state = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice.state
    assert state == invoice_pb2.INVOICE_STATE_EXPIRED
