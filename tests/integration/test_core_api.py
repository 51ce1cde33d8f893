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
from kassa.core.v1 import (
    event_pb2,
    event_pb2_grpc,
    invoice_pb2,
    invoice_pb2_grpc,
    merchant_pb2,
    merchant_pb2_grpc,
)
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup
from tests.support.config import XPUB
from tests.support.grpc_errors import rich

TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[CoreSetup]:
    run_dir: Path = tmp_path_factory.mktemp("core-api")
    setup = CoreSetup(
        run_dir=run_dir,
        dsn=postgres.create_database("core_api"),
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        # No adapter runs here (API tests): invoices are taken on the unwatched chain.
        health={"invoices_need_chain": False},
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
    )
    process: ManagedProcess = setup.process().start()
    yield setup
    assert process.stop() == 0, "core did not stop cleanly on SIGTERM"


MERCHANTS = ("acme", "pager", "stream", "expiry", "other")


@pytest.fixture(scope="module")
def tokens(core: CoreSetup) -> dict[str, str]:
    """One API key per test merchant."""
    return {m: core.merchant_token(m) for m in MERCHANTS}


@pytest.fixture(scope="module")
def admin_channel(core: CoreSetup, tokens) -> Iterator[grpc.Channel]:
    """A platform key: may act for every merchant (tokens ensures they exist)."""
    with core.channel(core.admin_token()) as channel:
        yield channel


@pytest.fixture
def invoices(admin_channel) -> invoice_pb2_grpc.InvoiceServiceStub:
    return invoice_pb2_grpc.InvoiceServiceStub(admin_channel)


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
        # Finer than the cent, absurdly large, or not an ISO-4217 currency (issue 19).
        (usd(amount="25.0000000001"), "price.amount"),
        (usd(amount="1" + "0" * 40), "price.amount"),
        (usd(price=invoice_pb2.FiatAmount(amount="25.00", currency="ABC")), "price.currency"),
        (usd(price=invoice_pb2.FiatAmount(amount="25.5", currency="JPY")), "price.amount"),
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
    with core.channel(core.admin_token()) as channel:
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
    with core.channel(core.admin_token()) as channel:
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


# --- credentials and isolation -------------------------------------------------


def _code_reason(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = rich(caught.value)
    return error.code, error.reason


def test_calls_without_a_valid_key_are_unauthenticated(core) -> None:
    with core.bare_channel() as bare:
        stub = invoice_pb2_grpc.InvoiceServiceStub(bare)
        assert _code_reason(lambda: stub.CreateInvoice(usd())) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "CREDENTIALS_MISSING",
        )
    forged = "kassa_0123456789abcdef_" + "A" * 43
    with core.channel(forged) as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
        assert _code_reason(lambda: stub.CreateInvoice(usd())) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "CREDENTIALS_INVALID",
        )


def test_a_merchant_never_sees_another_merchants_invoices(core, tokens, invoices) -> None:
    theirs = invoices.CreateInvoice(
        usd(parent="merchants/other", merchant_order_id="secret")
    ).invoice
    with core.channel(tokens["acme"]) as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
        mine = stub.CreateInvoice(usd(merchant_order_id="mine")).invoice
        assert (
            stub.GetInvoice(invoice_pb2.GetInvoiceRequest(name=mine.name)).invoice.name == mine.name
        )
        forbidden = (grpc.StatusCode.PERMISSION_DENIED, "MERCHANT_FORBIDDEN")
        assert (
            _code_reason(lambda: stub.GetInvoice(invoice_pb2.GetInvoiceRequest(name=theirs.name)))
            == forbidden
        )
        assert (
            _code_reason(
                lambda: stub.ListInvoices(invoice_pb2.ListInvoicesRequest(parent="merchants/other"))
            )
            == forbidden
        )
        assert _code_reason(lambda: stub.CreateInvoice(usd(parent="merchants/other"))) == forbidden
        assert (
            _code_reason(
                lambda: stub.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=theirs.name))
            )
            == forbidden
        )
        # A name under its own merchant with the other's id is simply not found.
        spoofed = f"merchants/acme/invoices/{theirs.name.rsplit('/', 1)[1]}"
        assert _code_reason(lambda: stub.GetInvoice(invoice_pb2.GetInvoiceRequest(name=spoofed)))[
            1
        ] == ("INVOICE_NOT_FOUND")
        events = event_pb2_grpc.EventServiceStub(channel)
        assert (
            _code_reason(
                lambda: next(
                    events.StreamEvents(event_pb2.StreamEventsRequest(parent="merchants/other"))
                )
            )
            == forbidden
        )
        assert (
            _code_reason(lambda: next(events.StreamEvents(event_pb2.StreamEventsRequest())))
            == forbidden
        )
        own = events.StreamEvents(event_pb2.StreamEventsRequest(parent="merchants/acme"), timeout=5)
        names = {next(own).event.invoice.name for _ in range(1)}
        own.cancel()
        assert all(n.startswith("merchants/acme/") for n in names)


def test_scopes_limit_what_a_key_may_do_and_revocation_takes_effect(core, tokens) -> None:
    reader = core.merchant_token("acme", ("invoices:read",))
    with core.channel(reader) as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
        assert _code_reason(lambda: stub.CreateInvoice(usd())) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPE_MISSING",
        )
        stub.ListInvoices(invoice_pb2.ListInvoicesRequest(parent="merchants/acme"))
        key_id = reader.split("_")[1]
        with core.channel(core.admin_token()) as admin:
            merchant_pb2_grpc.MerchantServiceStub(admin).RevokeApiKey(
                merchant_pb2.RevokeApiKeyRequest(name=f"merchants/acme/apiKeys/{key_id}")
            )
        time.sleep(0.5)  # the core trusts a looked-up key for key_cache_s (0.2 s here)
        assert _code_reason(
            lambda: stub.ListInvoices(invoice_pb2.ListInvoicesRequest(parent="merchants/acme"))
        ) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_REVOKED")


def test_merchant_admin_is_for_platform_keys_only(core, tokens) -> None:
    with core.channel(tokens["acme"]) as channel:
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        assert _code_reason(
            lambda: stub.CreateMerchant(
                merchant_pb2.CreateMerchantRequest(merchant_id="evil", display_name="Evil")
            )
        ) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")
    with core.channel(core.admin_token()) as admin:
        stub = merchant_pb2_grpc.MerchantServiceStub(admin)
        keys = stub.ListApiKeys(merchant_pb2.ListApiKeysRequest(parent="merchants/acme")).api_keys
        assert keys and all(not k.name.endswith(tokens["acme"]) for k in keys)


def test_create_merchant_is_idempotent_by_request_id(core, tokens) -> None:
    with core.channel(core.admin_token()) as admin:
        stub = merchant_pb2_grpc.MerchantServiceStub(admin)

        def create(merchant_id: str, name: str, request_id: str = "") -> object:
            return stub.CreateMerchant(
                merchant_pb2.CreateMerchantRequest(
                    merchant_id=merchant_id, display_name=name, request_id=request_id
                )
            ).merchant

        first = create("idem-m", "Idem", "m-1")
        assert create("idem-m", "Idem", "m-1") == first
        assert _code_reason(lambda: create("idem-n", "Other", "m-1")) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "REQUEST_ID_REUSED",
        )
        assert _code_reason(
            lambda: stub.GetMerchant(merchant_pb2.GetMerchantRequest(name="merchants/idem-n"))
        ) == (grpc.StatusCode.NOT_FOUND, "MERCHANT_NOT_FOUND")
        assert _code_reason(lambda: create("idem-m", "Idem")) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "MERCHANT_EXISTS",
        )


def test_invoice_for_an_unknown_merchant_is_not_found(invoices, core) -> None:
    before = counts(core.dsn)
    code, reason = _code_reason(lambda: invoices.CreateInvoice(usd(parent="merchants/nobody")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "MERCHANT_NOT_FOUND")
    assert counts(core.dsn) == before


# --- cancel, mark, filters -----------------------------------------------------------


def test_cancel_before_funds_and_refuse_twice(invoices) -> None:
    invoice = invoices.CreateInvoice(usd(merchant_order_id="to-cancel")).invoice
    cancelled = invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=invoice.name)).invoice
    assert cancelled.state == invoice_pb2.INVOICE_STATE_CANCELLED
    code, reason = _code_reason(
        lambda: invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=invoice.name))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INVOICE_NOT_CANCELLABLE")


def test_mark_records_state_reason_and_actor(invoices, core) -> None:
    invoice = invoices.CreateInvoice(usd(merchant_order_id="to-mark")).invoice
    missing = _code_reason(
        lambda: invoices.MarkInvoice(
            invoice_pb2.MarkInvoiceRequest(name=invoice.name, state=invoice_pb2.INVOICE_STATE_PAID)
        )
    )
    assert missing == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    marked = invoices.MarkInvoice(
        invoice_pb2.MarkInvoiceRequest(
            name=invoice.name,
            state=invoice_pb2.INVOICE_STATE_PAID,
            reason="paid by bank transfer, ticket 77",
        )
    ).invoice
    assert marked.state == invoice_pb2.INVOICE_STATE_PAID
    assert invoice_pb2.INVOICE_FLAG_MARKED in marked.flags
    assert marked.mark.reason == "paid by bank transfer, ticket 77"
    assert marked.mark.actor.startswith("merchants/-/apiKeys/")
    assert marked.mark.state == invoice_pb2.INVOICE_STATE_PAID


def test_list_filters_by_state_flag_asset_order_and_time(invoices) -> None:
    parent = "merchants/pager"
    a = invoices.CreateInvoice(usd(parent=parent, merchant_order_id="filter-a")).invoice
    b = invoices.CreateInvoice(usd(parent=parent, merchant_order_id="filter-b")).invoice
    invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=b.name))

    def names(**kw: object) -> set[str]:
        request = invoice_pb2.ListInvoicesRequest(parent=parent, page_size=1000, **kw)  # type: ignore[arg-type]
        return {i.name for i in invoices.ListInvoices(request).invoices}

    assert b.name in names(states=[invoice_pb2.INVOICE_STATE_CANCELLED])
    assert a.name not in names(states=[invoice_pb2.INVOICE_STATE_CANCELLED])
    assert names(merchant_order_id="filter-a") == {a.name}
    assert a.name in names(asset=TOKEN)
    assert names(asset="eip155:31337/slip44:60") == set()
    assert names(flags=[invoice_pb2.INVOICE_FLAG_MARKED]) == set()
    assert names(create_time_start=b.create_time) >= {b.name}
    assert a.name not in names(create_time_start=b.create_time)
    assert names(create_time_end=a.create_time) & {a.name, b.name} == set()
