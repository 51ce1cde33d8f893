"""The edge against a real core process and PostgreSQL, as a hostile and as a
careless client: authentication before validation on every RPC, undecodable
bytes, values past what the database holds, poisoned ledger requests next
to a bystander's, internal webhook targets, and a wire fuzzer over every RPC
(tests/support/wire_fuzz.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.server import SERVICES
from core.webhooks.targets import internal, url_problem
from kassa.core.v1 import event_pb2, invoice_pb2, invoice_pb2_grpc, webhook_pb2, webhook_pb2_grpc
from kassa.ledger.v1 import ledger_pb2 as lpb
from kassa.ledger.v1 import ledger_pb2_grpc as lpb_grpc
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup
from tests.support import wire_fuzz
from tests.support.config import XPUB
from tests.support.grpc_errors import rich
from tests.support.ssrf import INTERNAL_HOSTS

TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[CoreSetup]:
    run_dir: Path = tmp_path_factory.mktemp("edge")
    setup = CoreSetup(
        run_dir=run_dir,
        dsn=postgres.create_database("edge_hardening"),
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        # No adapter runs here: invoices on the unwatched chain are taken all the same.
        health={"invoices_need_chain": False},
    )
    process: ManagedProcess = setup.process().start()
    setup.merchant_token("acme")
    # Another merchant's data, which no answer to acme's key may show.
    with setup.channel(setup.merchant_token("rival")) as channel:
        invoice_pb2_grpc.InvoiceServiceStub(channel).CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent="merchants/rival", merchant_order_id="secret", asset=TOKEN, asset_amount="7"
            )
        )
    yield setup
    assert process.stop() == 0, "core did not stop cleanly on SIGTERM"
    log = (run_dir / "core.log").read_text(errors="replace")
    assert "core stopped" in log
    assert "Task was destroyed" not in log


@pytest.fixture(scope="module")
def admin(core: CoreSetup) -> Iterator[grpc.Channel]:
    with core.channel(core.admin_token()) as channel:
        yield channel


@pytest.fixture(scope="module")
def anonymous(core: CoreSetup) -> Iterator[grpc.Channel]:
    with core.bare_channel() as channel:  # TLS, no API key
        yield channel


@pytest.fixture(scope="module")
def rows(core: CoreSetup) -> Iterator[wire_fuzz.RowCounter]:
    counter = wire_fuzz.RowCounter(core.dsn)
    yield counter
    counter.close()


METHODS = wire_fuzz.methods(SERVICES)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path)
def test_authentication_comes_before_validation(method: wire_fuzz.Method, anonymous) -> None:
    # A request that is wrong in every way it can be, from a caller with no key.
    poisoned = wire_fuzz.poisoned(method)
    for payload in (poisoned, b"", b"\xff\xff\xff"):
        code, error = wire_fuzz.invoke(anonymous, method, payload)
        if method.service.endswith(("PayoutService", "SweepService")):
            # Not served without a [signer]: refused before anything is read.
            assert code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED)
            continue
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method.path, code, error)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path)
def test_undecodable_bytes_are_invalid_argument(method: wire_fuzz.Method, admin, rows) -> None:
    if method.service.endswith(("PayoutService", "SweepService")):
        pytest.skip("not served without a [signer]")
    before = rows.count()
    for payload in (b"\xff\xff\xff", b"\x0a\xff\x01", b"\x08" + b"\xff" * 11, b"\x12\x05ab"):
        code, error = wire_fuzz.invoke(admin, method, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.path, payload, code)
        assert error is not None and error.reason == "MESSAGE_UNDECODABLE"
    assert rows.count() == before


OUT_OF_RANGE = [
    (
        "kassa.ledger.v1.LedgerService/CreateTransfers",
        lpb.CreateTransfersRequest(
            transfers=[
                lpb.Transfer(
                    id="t",
                    debit_account_id="a",
                    credit_account_id="b",
                    amount="1",
                    asset=TOKEN,
                    code=1,
                    reference="ref\x00",
                    pending=True,
                    timeout_s=2**31,
                )
            ]
        ),
        {"transfers[0].reference", "transfers[0].timeout_s"},
    ),
    (
        "kassa.ledger.v1.LedgerService/CreateTransfers",
        lpb.CreateTransfersRequest(transfers=[lpb.Transfer(id="t", user_data="u" * 3 * 2**20)]),
        {"transfers[0].user_data"},
    ),
    (
        "kassa.ledger.v1.LedgerService/ListTransfers",
        lpb.ListTransfersRequest(account_id="a", page_size=-1),
        {"page_size"},
    ),
    (
        "kassa.ledger.v1.LedgerService/ListTransfers",
        lpb.ListTransfersRequest(
            account_id="a", start_time=timestamp_pb2.Timestamp(seconds=-(2**40))
        ),
        {"start_time"},
    ),
    (
        "kassa.core.v1.EventService/StreamEvents",
        event_pb2.StreamEventsRequest(after_sequence=2**63),
        {"after_sequence"},
    ),
    (
        "kassa.core.v1.InvoiceService/ListInvoices",
        invoice_pb2.ListInvoicesRequest(
            parent="merchants/acme",
            create_time_end=timestamp_pb2.Timestamp(seconds=2**40, nanos=-5),
        ),
        {"create_time_end"},
    ),
    (
        "kassa.core.v1.InvoiceService/CreateInvoice",
        invoice_pb2.CreateInvoiceRequest(
            parent="merchants/acme\x00", merchant_order_id="o", asset=TOKEN, asset_amount="1"
        ),
        {"parent"},
    ),
    (
        "kassa.core.v1.InvoiceService/GetInvoice",
        invoice_pb2.GetInvoiceRequest(name="n" * 20000),
        {"name"},
    ),
]


@pytest.mark.parametrize(("path", "request_", "fields"), OUT_OF_RANGE, ids=lambda x: str(x)[:40])
def test_values_past_what_the_database_holds_are_named_not_unknown(
    path: str, request_, fields: set[str], admin, rows
) -> None:
    method = next(m for m in METHODS if m.path == path)
    before = rows.count()
    code, error = wire_fuzz.invoke(admin, method, request_.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, error)
    assert error is not None and set(error.fields) == fields
    # The error names where and what, and never quotes the oversized value back.
    assert len(error.message) < 1024 and "uuuu" not in error.message and "nnnn" not in error.message
    assert rows.count() == before


def test_a_bystanders_transfers_all_succeed_while_another_client_sends_poison(admin) -> None:
    ledger = lpb_grpc.LedgerServiceStub(admin)
    accounts = [lpb.Account(id=i, asset=TOKEN, code=1) for i in ("by-from", "by-to")]
    ledger.CreateAccounts(lpb.CreateAccountsRequest(accounts=accounts))

    def valid(n: int) -> list[str]:
        transfer = lpb.Transfer(
            id=f"bystander-{n}",
            debit_account_id="by-from",
            credit_account_id="by-to",
            amount="1",
            asset=TOKEN,
            code=1,
        )
        results = ledger.CreateTransfers(lpb.CreateTransfersRequest(transfers=[transfer])).results
        return [r.reason for r in results]

    poisons = [
        lpb.Transfer(id="p", reference="\x00"),
        lpb.Transfer(id="p", pending=True, timeout_s=2**31, amount="1"),
        lpb.Transfer(id="p\x00", amount="1"),
        lpb.Transfer(id="p", user_data="x" * 10_000),
        lpb.Transfer(id="p", amount="9" * 80),
        lpb.Transfer(id="p", code=2**32 - 1),
    ]

    def poison(n: int) -> grpc.StatusCode:
        bad = poisons[n % len(poisons)]
        good = lpb.Transfer(
            id=f"poisoner-{n}",
            debit_account_id="by-from",
            credit_account_id="by-to",
            amount="1",
            asset=TOKEN,
            code=1,
        )
        try:
            ledger.CreateTransfers(lpb.CreateTransfersRequest(transfers=[good, bad]))
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(max_workers=12) as pool:
        bystander = [pool.submit(valid, n) for n in range(120)]
        poisoned = [pool.submit(poison, n) for n in range(120)]
        outcomes = [f.result() for f in bystander]
        codes = {f.result() for f in poisoned}
    assert outcomes == [[""]] * 120
    assert grpc.StatusCode.UNKNOWN not in codes and grpc.StatusCode.INTERNAL not in codes
    to = ledger.GetAccount(lpb.GetAccountRequest(id="by-to")).account
    assert to.credits_posted == str(
        120 + sum(1 for f in poisoned if f.result() == grpc.StatusCode.OK)
    )


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_internal_webhook_targets_are_refused_at_save(host: str, admin, rows) -> None:
    stub = webhook_pb2_grpc.WebhookServiceStub(admin)
    before = rows.count()
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateWebhookEndpoint(
            webhook_pb2.CreateWebhookEndpointRequest(
                parent="merchants/acme",
                webhook_endpoint=webhook_pb2.WebhookEndpoint(
                    url=f"https://{host}/hook", event_types=["invoice.paid"]
                ),
            )
        )
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["webhook_endpoint.url"]
    assert rows.count() == before


def test_a_name_resolving_to_loopback_is_refused_at_save(admin, rows) -> None:
    stub = webhook_pb2_grpc.WebhookServiceStub(admin)
    before = rows.count()
    # "localhost" is refused by name; this host's own name only by what it resolves to.
    name = socket.gethostname()
    try:
        addresses = {i[4][0] for i in socket.getaddrinfo(name, None)}
    except OSError:
        pytest.skip("this host's name does not resolve")
    if not any(internal(str(a)) for a in addresses) or url_problem(f"https://{name}/", False):
        pytest.skip("this host's name is public or refused by name")
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateWebhookEndpoint(
            webhook_pb2.CreateWebhookEndpointRequest(
                parent="merchants/acme",
                webhook_endpoint=webhook_pb2.WebhookEndpoint(
                    url=f"https://{name}/hook", event_types=["invoice.paid"]
                ),
            )
        )
    assert rich(caught.value).fields == ["webhook_endpoint.url"]
    assert rows.count() == before


def _healthy(channel: grpc.Channel) -> bool:
    """Every core service SERVING (the database answers). "" also needs every chain
    followed, and no adapter runs here."""
    health = health_pb2_grpc.HealthStub(channel)
    answers = [
        health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5) for name in SERVICES
    ]
    return all(a.status == health_pb2.HealthCheckResponse.SERVING for a in answers)


FUZZ_METHODS = [m for m in METHODS if not m.service.endswith(("PayoutService", "SweepService"))]


@pytest.mark.parametrize("method", FUZZ_METHODS, ids=lambda m: m.path)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_wire_fuzz(method: wire_fuzz.Method, data: st.DataObject, admin, rows) -> None:
    wire_fuzz.one_example(method, data, admin, rows)


@pytest.fixture(scope="module")
def acme(core: CoreSetup) -> Iterator[grpc.Channel]:
    with core.channel(core.merchant_token("acme")) as channel:
        yield channel


@pytest.mark.parametrize("method", FUZZ_METHODS, ids=lambda m: m.path)
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_wire_fuzz_as_a_merchant(method: wire_fuzz.Method, data: st.DataObject, acme, rows) -> None:
    wire_fuzz.one_example(method, data, acme, rows, never_see=b"merchants/rival")


@pytest.mark.slow
@pytest.mark.parametrize("method", FUZZ_METHODS, ids=lambda m: m.path)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_wire_fuzz_long(method: wire_fuzz.Method, data: st.DataObject, admin, rows) -> None:
    wire_fuzz.one_example(method, data, admin, rows)


def test_health_stays_serving_after_all_of_it(admin) -> None:
    assert _healthy(admin)


def test_page_tokens_are_sealed_and_bound_to_caller_parent_and_filter(core, admin) -> None:
    invoices = invoice_pb2_grpc.InvoiceServiceStub(admin)
    for i in range(3):
        invoices.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent="merchants/acme",
                merchant_order_id=f"page-{i}",
                asset=TOKEN,
                asset_amount="1000",
            )
        )
    first = invoices.ListInvoices(
        invoice_pb2.ListInvoicesRequest(parent="merchants/acme", page_size=1)
    )
    token = first.next_page_token
    assert token
    again = invoices.ListInvoices(
        invoice_pb2.ListInvoicesRequest(parent="merchants/acme", page_size=1, page_token=token)
    )
    assert again.invoices[0].name != first.invoices[0].name
    body, tag = token.split(".")
    forged = [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        body + "." + tag[::-1],
        "eyJ4Ijoge30." + tag,
        "x" * 600,
        token + "\n",
    ]
    for bad in forged:
        _refused_token(invoices, "merchants/acme", bad, [])
    # The same token under another parent or filter, or from another caller.
    _refused_token(invoices, "merchants/other", token, [])
    _refused_token(invoices, "merchants/acme", token, [invoice_pb2.INVOICE_STATE_PAID])
    with core.channel(core.merchant_token("acme")) as channel:
        _refused_token(invoice_pb2_grpc.InvoiceServiceStub(channel), "merchants/acme", token, [])


def _refused_token(stub, parent: str, token: str, states: list[int]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListInvoices(
            invoice_pb2.ListInvoicesRequest(
                parent=parent, page_size=1, page_token=token, states=states
            )
        )
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.fields == ["page_token"]


# What a maximum batch may cost another caller: its rules run in a thread
# (core/ledger/store.py) and its checking, converting and rendering yield
# to the event loop every 256 transfers (core/api/limits.py,
# ledger_service.py). Measured on the shared 2-core test machine, probe and
# core each in their own process: p99 135 ms, max 480 ms of GetAccount
# beside four 8,190-transfer batches (idle median 8 ms); with the client in
# the same process and nothing yielding, max 870 ms. Marked slow: a
# latency bound on a machine five test runs share is a measurement, not a gate.
STALL_BOUND_S = 0.25


# Sends maximum batches from its own process: built in this one, the
# client's own Python would hold the GIL and stall the probe, not the core.
_BIG_SENDER = """
import sys
from pathlib import Path
from core.clients import ApiTls, authed_channel
from kassa.ledger.v1 import ledger_pb2 as lpb, ledger_pb2_grpc as lpb_grpc
target, token, asset, rounds, ca = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
channel = authed_channel(target, token, ApiTls.from_files(Path(ca)))
stub = lpb_grpc.LedgerServiceStub(channel)
for n in range(rounds):
    transfers = [
        lpb.Transfer(id=f"big-{n}-{i}", debit_account_id="big-from", credit_account_id="big-to",
                     amount="1", asset=asset, code=1)
        for i in range(8190)
    ]
    results = stub.CreateTransfers(
        lpb.CreateTransfersRequest(transfers=transfers), timeout=120
    ).results
    assert all(r.reason == "" for r in results), [r for r in results if r.reason][:3]
"""


@pytest.mark.slow
def test_a_maximum_batch_does_not_stall_other_callers(core, admin) -> None:
    ledger = lpb_grpc.LedgerServiceStub(admin)
    ledger.CreateAccounts(
        lpb.CreateAccountsRequest(
            accounts=[lpb.Account(id=i, asset=TOKEN, code=1) for i in ("big-from", "big-to")]
        )
    )

    def probe(until: Callable[[], bool]) -> list[float]:
        waits = []
        while not until():
            t0 = time.monotonic()
            ledger.GetAccount(lpb.GetAccountRequest(id="big-to"), timeout=10)
            waits.append(time.monotonic() - t0)
        return waits

    idle_end = time.monotonic() + 1.0
    idle = sorted(probe(lambda: time.monotonic() > idle_end))
    rounds = 4
    sender = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _BIG_SENDER,
            core.target,
            core.admin_token(),
            TOKEN,
            str(rounds),
            str(core.ca_file),
        ]
    )
    busy = sorted(probe(lambda: sender.poll() is not None))
    assert sender.wait() == 0
    credited = ledger.GetAccount(lpb.GetAccountRequest(id="big-to")).account.credits_posted
    assert credited == str(rounds * 8190)
    p99 = busy[int(len(busy) * 0.99) - 1]
    print(
        f"\nGetAccount beside {rounds} batches of 8,190 ({len(busy)} calls): idle median "
        f"{idle[len(idle) // 2] * 1e3:.1f} ms, busy median {busy[len(busy) // 2] * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms, max {busy[-1] * 1e3:.1f} ms"
    )
    assert p99 < STALL_BOUND_S
