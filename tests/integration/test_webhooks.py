"""Webhooks against a real core process, PostgreSQL and a local HTTP receiver.

The receiver fails on purpose (500, a timeout, not listening yet, 410, 400)
and the core is killed between attempts; every event must still arrive,
signed, in order per invoice, and never without its stored delivery.
Retry schedules are milliseconds here ([webhooks] in the core's config).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from core.events.outbox import NewEvent, append
from core.webhooks import signing
from core.webhooks.dispatch import ANALYZE_AFTER
from core.webhooks.worker import CLAIM_SQL
from kassa.core.v1 import (
    event_pb2,
    invoice_pb2,
    invoice_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from localstack.ports import free_port
from localstack.stack import CoreSetup
from tests.support.config import XPUB
from tests.support.grpc_errors import rich
from tests.support.waiting import db, wait_until

TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
TIMEOUT_S = 0.5
WEBHOOKS = {
    "initial_backoff_s": 0.05,
    "max_backoff_s": 0.2,
    "give_up_after_s": 120,
    "timeout_s": TIMEOUT_S,
    "poll_interval_s": 0.05,
    "lease_grace_s": 0.5,
    "allow_private_targets": True,
}
SCOPES = ("invoices:read", "invoices:write", "events:read", "webhooks:read", "webhooks:write")


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered; 0: it stalled past the core's timeout


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1. `answer(path, n)` gives the status for
    the n-th request (0-based) or None to stall past the core's timeout."""

    port: int = field(default_factory=free_port)
    answer: Callable[[str, int], int | None] = lambda _path, _n: 200
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    n = len(receiver.requests)
                    status = receiver.answer(self.path, n)
                    receiver.requests.append(
                        Request(self.path, dict(self.headers.items()), body, status or 0)
                    )
                if status is None:
                    time.sleep(TIMEOUT_S * 3)
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def accepted(self) -> list[Request]:
        """Requests answered 2xx in time, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]


def make_core(run_dir: Path, dsn: str) -> CoreSetup:
    return CoreSetup(
        run_dir=run_dir,
        dsn=dsn,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        # No adapter runs here (API tests): invoices are taken on the unwatched chain.
        health={"invoices_need_chain": False},
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        webhooks=WEBHOOKS,
    )


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[CoreSetup]:
    setup = make_core(tmp_path_factory.mktemp("webhooks"), postgres.create_database("webhooks"))
    process = setup.process().start()
    yield setup
    assert process.stop() == 0, "core did not stop cleanly on SIGTERM"


@dataclass
class Merchant:
    id: str
    channel: grpc.Channel

    @property
    def parent(self) -> str:
        return f"merchants/{self.id}"

    @property
    def hooks(self) -> webhook_pb2_grpc.WebhookServiceStub:
        return webhook_pb2_grpc.WebhookServiceStub(self.channel)

    @property
    def invoices(self) -> invoice_pb2_grpc.InvoiceServiceStub:
        return invoice_pb2_grpc.InvoiceServiceStub(self.channel)

    def endpoint(self, url: str, **kw: object) -> webhook_pb2.CreateWebhookEndpointResponse:
        return self.hooks.CreateWebhookEndpoint(
            webhook_pb2.CreateWebhookEndpointRequest(
                parent=self.parent,
                webhook_endpoint=webhook_pb2.WebhookEndpoint(url=url, **kw),  # type: ignore[arg-type]
            )
        )

    def invoice(self, order: str) -> invoice_pb2.Invoice:
        return self.invoices.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=self.parent,
                merchant_order_id=order,
                asset=TOKEN,
                price=invoice_pb2.FiatAmount(amount="10.00", currency="USD"),
            )
        ).invoice

    def cancel(self, name: str) -> None:
        self.invoices.CancelInvoice(invoice_pb2.CancelInvoiceRequest(name=name))


_merchants = iter(range(10**6))


def merchant_of(core: CoreSetup) -> Iterator[Merchant]:
    merchant_id = f"hooks{next(_merchants)}-{uuid.uuid4().hex[:6]}"
    with core.channel(core.merchant_token(merchant_id, SCOPES)) as channel:
        yield Merchant(merchant_id, channel)


@pytest.fixture
def merchant(core: CoreSetup) -> Iterator[Merchant]:
    yield from merchant_of(core)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def events_of(dsn: str, merchant_id: str) -> list[asyncpg.Record]:
    return db(
        dsn,
        "SELECT sequence, id, type, resource_name FROM events WHERE merchant_id = $1 ORDER BY sequence",
        merchant_id,
    )


def check_signed(request: Request, secret: str) -> event_pb2.Event:
    assert signing.verify(request.headers["Kassa-Signature"], secret, request.body, time.time())
    event = json_format.Parse(request.body, event_pb2.Event())
    assert request.headers["Kassa-Event-Id"] == event.id
    assert request.headers["Kassa-Event-Type"] == event.type
    assert request.headers["Content-Type"] == "application/json"
    # The body is the event only: no key, no secret, nothing else.
    assert set(json.loads(request.body)) <= {"id", "sequence", "type", "createTime", "invoice"}
    assert secret.encode() not in request.body
    assert "authorization" not in {k.lower() for k in request.headers}
    return event


def test_failures_then_success_every_event_arrives_signed_in_order(
    core: CoreSetup, merchant: Merchant, receiver: Receiver
) -> None:
    # Not listening yet: the first attempts are refused connections.
    created = merchant.endpoint(receiver.url())
    secret = created.secret
    invoices = [merchant.invoice(f"o{i}") for i in range(4)]
    merchant.cancel(invoices[0].name)
    merchant.cancel(invoices[2].name)
    wait_until(
        lambda: bool(
            db(
                core.dsn,
                "SELECT 1 FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.merchant_id = $1 AND a.status_code IS NULL",
                merchant.id,
            )
        ),
        what="a refused attempt",
    )
    # Listening now: a 500, then a stall past the timeout, then 200s.
    receiver.answer = lambda _path, n: {0: 500, 1: None}.get(n, 200)
    receiver.start()
    expected = events_of(core.dsn, merchant.id)
    assert len(expected) == 6  # 4 created, 2 cancelled
    wanted = {str(e["id"]) for e in expected}
    wait_until(
        lambda: {r.headers["Kassa-Event-Id"] for r in receiver.accepted()} >= wanted,
        what="every event accepted",
    )
    got = [check_signed(r, secret) for r in receiver.accepted()]
    assert {e.id for e in got} == wanted
    # Per invoice, in sequence order (first acceptance of each event).
    first: dict[str, event_pb2.Event] = {}
    for e in got:
        first.setdefault(e.id, e)
    by_invoice: dict[str, list[int]] = {}
    for e in first.values():
        by_invoice.setdefault(e.invoice.name, []).append(e.sequence)
    assert all(seqs == sorted(seqs) for seqs in by_invoice.values()), by_invoice
    assert [s for s in by_invoice[invoices[0].name]] == sorted(
        e["sequence"] for e in expected if e["resource_name"] == invoices[0].name
    )
    # The attempts are visible: refused/timed out (0), 500, then 200.
    wait_until(
        lambda: all(
            d.status == webhook_pb2.WEBHOOK_DELIVERY_STATUS_SUCCEEDED
            for d in merchant.hooks.ListWebhookDeliveries(
                webhook_pb2.ListWebhookDeliveriesRequest(parent=created.webhook_endpoint.name)
            ).deliveries
        ),
        what="every delivery recorded as succeeded",
    )
    deliveries = merchant.hooks.ListWebhookDeliveries(
        webhook_pb2.ListWebhookDeliveriesRequest(parent=created.webhook_endpoint.name)
    ).deliveries
    assert len(deliveries) == 6
    codes = [a.status_code for d in deliveries for a in d.attempts]
    errors = [a.error for d in deliveries for a in d.attempts if a.status_code == 0]
    assert 500 in codes and 200 in codes and 0 in codes
    assert any("timeout" in e for e in errors) and any("Connect" in e for e in errors), errors
    assert all(a.duration_ms < 5000 for d in deliveries for a in d.attempts)


def test_410_and_400_are_not_retried(
    core: CoreSetup, merchant: Merchant, receiver: Receiver
) -> None:
    receiver.answer = lambda path, _n: 410 if path == "/gone" else 400
    receiver.start()
    gone = merchant.endpoint(receiver.url("/gone")).webhook_endpoint
    bad = merchant.endpoint(receiver.url("/bad")).webhook_endpoint
    merchant.invoice("x")
    wanted = {str(e["id"]) for e in events_of(core.dsn, merchant.id)}

    def failed(endpoint: webhook_pb2.WebhookEndpoint) -> list[webhook_pb2.WebhookDelivery]:
        return list(
            merchant.hooks.ListWebhookDeliveries(
                webhook_pb2.ListWebhookDeliveriesRequest(
                    parent=endpoint.name, status=webhook_pb2.WEBHOOK_DELIVERY_STATUS_FAILED
                )
            ).deliveries
        )

    wait_until(lambda: len(failed(gone)) == len(failed(bad)) == len(wanted), what="failed")
    time.sleep(0.5)  # ten backoff periods: a retry would have come by now
    for endpoint, code in ((gone, 410), (bad, 400)):
        (delivery,) = failed(endpoint)
        assert delivery.attempt_count == 1
        assert [a.status_code for a in delivery.attempts] == [code]
    assert sorted(r.path for r in receiver.requests) == ["/bad", "/gone"]


def test_rotation_signs_with_both_secrets_during_the_overlap_only(
    core: CoreSetup, merchant: Merchant, receiver: Receiver
) -> None:
    receiver.start()
    created = merchant.endpoint(receiver.url())
    old = created.secret
    rotated = merchant.hooks.RotateWebhookSecret(
        webhook_pb2.RotateWebhookSecretRequest(
            name=created.webhook_endpoint.name, overlap_seconds=2, request_id="rot-1"
        )
    )
    new = rotated.secret
    assert new != old and rotated.webhook_endpoint.HasField("previous_secret_expire_time")
    again = merchant.hooks.RotateWebhookSecret(
        webhook_pb2.RotateWebhookSecretRequest(
            name=created.webhook_endpoint.name, overlap_seconds=2, request_id="rot-1"
        )
    )
    assert again.secret == new  # a retried rotation does not rotate twice
    with pytest.raises(grpc.RpcError) as reused:  # the id with another body
        merchant.hooks.RotateWebhookSecret(
            webhook_pb2.RotateWebhookSecretRequest(
                name=created.webhook_endpoint.name, overlap_seconds=60, request_id="rot-1"
            )
        )
    assert rich(reused.value).reason == "REQUEST_ID_REUSED"
    merchant.invoice("during")
    wait_until(lambda: len(receiver.accepted()) == 1)
    during = receiver.accepted()[0]
    assert during.headers["Kassa-Signature"].count("v1=") == 2
    check_signed(during, new)
    check_signed(during, old)
    time.sleep(2.1)
    merchant.invoice("after")
    wait_until(lambda: len(receiver.accepted()) == 2)
    after = receiver.accepted()[1]
    assert after.headers["Kassa-Signature"].count("v1=") == 1
    check_signed(after, new)
    assert not signing.verify(after.headers["Kassa-Signature"], old, after.body, time.time())


def test_endpoint_management_and_redelivery(
    core: CoreSetup, merchant: Merchant, receiver: Receiver
) -> None:
    receiver.start()
    hooks = merchant.hooks
    first = hooks.CreateWebhookEndpoint(
        webhook_pb2.CreateWebhookEndpointRequest(
            parent=merchant.parent,
            webhook_endpoint=webhook_pb2.WebhookEndpoint(
                url=receiver.url(), event_types=["invoice.cancelled"], description="shop"
            ),
            request_id="ep-1",
        )
    )
    retry = hooks.CreateWebhookEndpoint(
        webhook_pb2.CreateWebhookEndpointRequest(
            parent=merchant.parent,
            webhook_endpoint=webhook_pb2.WebhookEndpoint(
                url=receiver.url(), event_types=["invoice.cancelled"], description="shop"
            ),
            request_id="ep-1",
        )
    )
    assert retry.webhook_endpoint.name == first.webhook_endpoint.name
    assert retry.secret == first.secret
    # The same request_id with another body was silently answered with the
    # first endpoint; it is refused now (issue 19) and creates nothing.
    with pytest.raises(grpc.RpcError) as reused:
        hooks.CreateWebhookEndpoint(
            webhook_pb2.CreateWebhookEndpointRequest(
                parent=merchant.parent,
                webhook_endpoint=webhook_pb2.WebhookEndpoint(url=receiver.url()),
                request_id="ep-1",
            )
        )
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert rich(reused.value).reason == "REQUEST_ID_REUSED"
    name = first.webhook_endpoint.name
    got = hooks.GetWebhookEndpoint(webhook_pb2.GetWebhookEndpointRequest(name=name))
    assert got.webhook_endpoint.event_types == ["invoice.cancelled"]
    listed = hooks.ListWebhookEndpoints(
        webhook_pb2.ListWebhookEndpointsRequest(parent=merchant.parent)
    )
    assert [e.name for e in listed.webhook_endpoints] == [name]
    # Only the selected type is delivered.
    invoice = merchant.invoice("typed")
    merchant.cancel(invoice.name)
    wait_until(lambda: len(receiver.accepted()) == 1)
    assert receiver.accepted()[0].headers["Kassa-Event-Type"] == "invoice.cancelled"
    # Redeliver one event, then the time range (both events are in it, but
    # only the cancelled one is of the endpoint's types).
    event_id = receiver.accepted()[0].headers["Kassa-Event-Id"]
    count = hooks.RedeliverWebhooks(
        webhook_pb2.RedeliverWebhooksRequest(parent=name, event_id=event_id)
    ).delivery_count
    assert count == 1
    wait_until(lambda: len(receiver.accepted()) == 2)
    start = webhook_pb2.TimeRange()
    start.start_time.FromSeconds(int(time.time()) - 60)
    start.end_time.FromSeconds(int(time.time()) + 60)
    count = hooks.RedeliverWebhooks(
        webhook_pb2.RedeliverWebhooksRequest(parent=name, time_range=start)
    ).delivery_count
    assert count == 1
    wait_until(lambda: len(receiver.accepted()) == 3)
    assert {r.headers["Kassa-Event-Id"] for r in receiver.accepted()} == {event_id}
    # Update: all types now.
    updated = hooks.UpdateWebhookEndpoint(
        webhook_pb2.UpdateWebhookEndpointRequest(
            webhook_endpoint=webhook_pb2.WebhookEndpoint(name=name, event_types=[]),
            update_mask=field_mask_pb2.FieldMask(paths=["event_types"]),
        )
    ).webhook_endpoint
    assert list(updated.event_types) == [] and updated.description == "shop"
    merchant.invoice("all")
    wait_until(lambda: len(receiver.accepted()) == 4)
    # Paging through deliveries returns each once.
    seen: list[str] = []
    token = ""
    while True:
        page = hooks.ListWebhookDeliveries(
            webhook_pb2.ListWebhookDeliveriesRequest(
                parent=f"{merchant.parent}/webhookEndpoints/-", page_size=1, page_token=token
            )
        )
        seen += [d.name for d in page.deliveries]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 2
    hooks.DeleteWebhookEndpoint(webhook_pb2.DeleteWebhookEndpointRequest(name=name))
    with pytest.raises(grpc.RpcError) as caught:
        hooks.GetWebhookEndpoint(webhook_pb2.GetWebhookEndpointRequest(name=name))
    assert rich(caught.value).reason == "WEBHOOK_ENDPOINT_NOT_FOUND"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("ftp://127.0.0.1/x", "webhook_endpoint.url"),
        ("http://user:pw@127.0.0.1/x", "webhook_endpoint.url"),
        ("not a url", "webhook_endpoint.url"),
    ],
)
def test_bad_endpoints_are_invalid_argument(merchant: Merchant, url: str, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        merchant.endpoint(url, event_types=["Invoice Paid"])
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.domain == "kassa.core"
    assert field in error.fields and "webhook_endpoint.event_types[0]" in error.fields


def test_another_merchants_endpoints_are_forbidden(core: CoreSetup, merchant: Merchant) -> None:
    for other in merchant_of(core):
        name = merchant.endpoint("http://127.0.0.1:9/x").webhook_endpoint.name
        with pytest.raises(grpc.RpcError) as caught:
            other.hooks.GetWebhookEndpoint(webhook_pb2.GetWebhookEndpointRequest(name=name))
        assert rich(caught.value).reason == "MERCHANT_FORBIDDEN"


def test_core_killed_between_attempts_loses_nothing_and_sends_nothing_unstored(
    tmp_path: Path, fresh_dsn: str
) -> None:
    setup = make_core(tmp_path, fresh_dsn)
    process = setup.process().start()
    receiver = Receiver(answer=lambda _p, _n: 503).start()
    # merchant_of is a generator: keep it open for the channel's lifetime.
    gen = merchant_of(setup)
    merchant = next(gen)
    secret = merchant.endpoint(receiver.url()).secret
    for i in range(3):
        merchant.invoice(f"k{i}")
    wait_until(lambda: len(receiver.requests) >= 6, what="failing attempts")
    process.kill()  # SIGKILL, between (and maybe during) attempts
    sent_before = {r.headers["Kassa-Event-Id"] for r in receiver.requests}
    stored = {
        str(r["event_id"])
        for r in db(
            fresh_dsn, "SELECT event_id FROM webhook_deliveries WHERE merchant_id = $1", merchant.id
        )
    }
    assert sent_before <= stored, "sent without a stored delivery"

    # Events committed while the core is down: the dispatcher must find them.
    async def write_while_down() -> None:
        conn = await asyncpg.connect(fresh_dsn)
        try:
            async with conn.transaction():
                snapshot = invoice_pb2.Invoice(name=f"merchants/{merchant.id}/invoices/offline")
                await append(
                    conn,
                    [
                        NewEvent(
                            "invoice.created",
                            merchant.id,
                            snapshot.name,
                            snapshot.SerializeToString(deterministic=True),
                        )
                    ],
                )
        finally:
            await conn.close()

    asyncio.run(write_while_down())
    receiver.answer = lambda _p, _n: 200
    process = setup.process().start()
    try:
        wanted = {str(e["id"]) for e in events_of(fresh_dsn, merchant.id)}
        assert len(wanted) == 4
        wait_until(
            lambda: {r.headers["Kassa-Event-Id"] for r in receiver.accepted()} >= wanted,
            what="every event accepted after the restart",
        )
        for request in receiver.accepted():
            check_signed(request, secret)
        stored = {
            str(r["event_id"])
            for r in db(
                fresh_dsn,
                "SELECT event_id FROM webhook_deliveries WHERE merchant_id = $1",
                merchant.id,
            )
        }
        assert {r.headers["Kassa-Event-Id"] for r in receiver.requests} <= stored == wanted
        wait_until(
            lambda: (
                db(
                    fresh_dsn,
                    "SELECT count(*) AS n FROM webhook_deliveries WHERE merchant_id = $1 AND status = 'succeeded'",
                    merchant.id,
                )[0]["n"]
                == 4
            ),
            what="deliveries recorded as succeeded",
        )
    finally:
        gen.close()
        receiver.stop()
        assert process.stop() == 0


def test_a_burst_of_deliveries_gets_statistics_so_a_claim_walks_the_due_index(
    tmp_path: Path, fresh_dsn: str
) -> None:
    """Until the planner knows of a burst, a claim hashes and sorts every
    pending delivery (O(pending) per claim). The dispatcher that made the
    burst analyzes the table (autovacuum would only within a naptime); the
    claim then takes due deliveries in index order, stopping at its LIMIT."""
    setup = make_core(tmp_path, fresh_dsn)
    process = setup.process().start()
    receiver = Receiver().start()
    gen = merchant_of(setup)
    merchant = next(gen)
    analyzed = "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'webhook_deliveries'"
    try:
        merchant.endpoint(receiver.url())
        assert db(fresh_dsn, analyzed)[0]["last_analyze"] is None

        async def burst() -> None:
            conn = await asyncpg.connect(fresh_dsn)
            try:
                async with conn.transaction():
                    await append(
                        conn,
                        [
                            NewEvent(
                                "invoice.created",
                                merchant.id,
                                f"merchants/{merchant.id}/invoices/burst{i}",
                                invoice_pb2.Invoice(
                                    name=f"merchants/{merchant.id}/invoices/burst{i}"
                                ).SerializeToString(deterministic=True),
                            )
                            for i in range(ANALYZE_AFTER)
                        ],
                    )
            finally:
                await conn.close()

        asyncio.run(burst())
        wait_until(
            lambda: db(fresh_dsn, analyzed)[0]["last_analyze"] is not None,
            timeout_s=30,
            what="webhook_deliveries analyzed after the burst",
        )
        now = db(fresh_dsn, "SELECT now() AS t")[0]["t"]
        plan = "\n".join(r[0] for r in db(fresh_dsn, "EXPLAIN " + CLAIM_SQL, now, 8, now))
        assert "Index Scan using webhook_deliveries_due" in plan, plan
        assert "Hash Anti Join" not in plan, plan
        wait_until(
            lambda: (
                len({r.headers["Kassa-Event-Id"] for r in receiver.accepted()}) >= ANALYZE_AFTER
            ),
            timeout_s=120,
            what="every delivery of the burst accepted",
        )
    finally:
        gen.close()
        receiver.stop()
        assert process.stop() == 0
