"""Events benchmark, same run, same machine:

(a) events/s through StreamEvents (real core process, PostgreSQL outbox) to
    one consumer, vs a gRPC server stream of equal-size messages without the
    database (a separate process, same client code);
(b) webhook deliveries/s from the core to a local receiver (stored, claimed,
    signed, sent, recorded), vs raw HTTP POSTs of equal-size bodies to the
    same receiver with the same client library (aiohttp) and concurrency.

Run from the repo root: .venv/bin/python -m tests.bench.bench_events
(scripts/bench events). Last line: JSON.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for extra in ("", "gen", "scripts"):
    sys.path.insert(0, str(ROOT / extra))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import grpc  # noqa: E402
from aiohttp import web  # noqa: E402

from core.clients import ApiTls, api_aio_channel  # noqa: E402
from core.events.outbox import NewEvent, append  # noqa: E402
from core.render import events as resources  # noqa: E402
from kassa.core.v1 import (  # noqa: E402
    event_pb2,
    event_pb2_grpc,
    invoice_pb2,
    webhook_pb2,
    webhook_pb2_grpc,
)
from localstack.ports import free_port, wait_for_port  # noqa: E402
from localstack.postgres import PostgresCluster  # noqa: E402
from localstack.stack import CoreSetup  # noqa: E402

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
STREAM_EVENTS = 20_000
WEBHOOK_EVENTS = 3_000
CONCURRENCY = 32
MERCHANT = "bench"


def invoice(i: int) -> invoice_pb2.Invoice:
    """A realistic snapshot: what the state machine writes for a fresh invoice."""
    return invoice_pb2.Invoice(
        name=f"merchants/{MERCHANT}/invoices/inv{i:012d}",
        merchant_order_id=f"order-{i}",
        asset=TOKEN,
        network="eip155:31337",
        amount_due="25000000",
        deposit_address="0x" + f"{i:040x}",
        confirmations_required=3,
        state=invoice_pb2.INVOICE_STATE_AWAITING_PAYMENT,
        price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
        metadata={"cart": "c-1234", "customer": "cust-5678"},
    )


async def write_events(dsn: str, start: int, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for chunk in range(start, start + n, 1000):
            async with conn.transaction():
                await append(
                    conn,
                    [
                        NewEvent(
                            "invoice.created",
                            MERCHANT,
                            invoice(i).name,
                            invoice(i).SerializeToString(deterministic=True),
                        )
                        for i in range(chunk, min(chunk + 1000, start + n))
                    ],
                )
    finally:
        await conn.close()


# --- (a) StreamEvents vs a database-free server stream ---------------------


class _Baseline(event_pb2_grpc.EventServiceServicer):
    def __init__(self, message: event_pb2.StreamEventsResponse, count: int) -> None:
        self.message = message
        self.count = count

    async def StreamEvents(self, request, context):  # type: ignore[no-untyped-def]
        for _ in range(self.count):
            yield self.message


def _serve_baseline(port: int, payload: bytes, count: int, certs: Path) -> None:
    """The same TLS as the core's API (its certificate), so only the database differs."""

    async def run() -> None:
        server = grpc.aio.server()
        message = event_pb2.StreamEventsResponse.FromString(payload)
        event_pb2_grpc.add_EventServiceServicer_to_server(_Baseline(message, count), server)
        credentials = grpc.ssl_server_credentials(
            [((certs / "core-api.key").read_bytes(), (certs / "core-api.pem").read_bytes())]
        )
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


async def consume(target: str, token: str | None, count: int, tls: ApiTls) -> tuple[float, int]:
    """(events/s, bytes of the last message) reading `count` events from 0."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with api_aio_channel(target, tls) as channel:
        stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
            event_pb2.StreamEventsRequest(parent=f"merchants/{MERCHANT}", after_sequence=0),
            metadata=metadata,
        )
        begin = time.perf_counter()
        n, size = 0, 0
        async for response in stream:
            n += 1
            if n == count:
                size = response.ByteSize()
                break
        elapsed = time.perf_counter() - begin
        stream.cancel()
    return count / elapsed, size


# --- (b) webhook deliveries vs raw POSTs -----------------------------------


def _serve_receiver(port: int) -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def raw_posts(url: str, body: bytes, count: int) -> float:
    headers = {"Content-Type": "application/json", "Kassa-Signature": "t=0,v1=" + "0" * 64}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.content.read(4096)
                    assert response.status == 200

        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - begin)


async def deliveries(dsn: str, first_sequence: int) -> float:
    """Deliveries/s from the moment the events commit to the last success."""
    begin = time.perf_counter()
    await write_events(dsn, STREAM_EVENTS, WEBHOOK_EVENTS)
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            done = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
            )
            if done >= WEBHOOK_EVENTS:
                break
            await asyncio.sleep(0.02)
        row = await conn.fetchrow(
            """SELECT avg(duration_ms) AS avg_ms, max(duration_ms) AS max_ms, count(*) AS n
                 FROM webhook_attempts"""
        )
        print(
            f"    attempts: {row['n']}, mean {float(row['avg_ms']):.1f} ms, max {row['max_ms']} ms"
        )
    finally:
        await conn.close()
    return WEBHOOK_EVENTS / (time.perf_counter() - begin)


async def main_async(tmp: Path) -> dict[str, object]:
    cluster = PostgresCluster(tmp / "pg")
    cluster.start()
    ctx = multiprocessing.get_context("spawn")
    children: list[multiprocessing.process.BaseProcess] = []
    core = None
    try:
        dsn = cluster.create_database("bench")
        setup = CoreSetup(
            run_dir=tmp / "core",
            dsn=dsn,
            account_xpub=XPUB,
            chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
            # No adapter runs here (API tests): invoices are taken on the unwatched chain.
            health={"invoices_need_chain": False},
            assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
            fixed_rates={"TUSD/USD": "1.00"},
            webhooks={
                "allow_private_targets": True,
                "concurrency": CONCURRENCY,
                "endpoint_concurrency": CONCURRENCY,
                "poll_interval_s": 0.2,
            },
        )
        core = setup.process().start()
        token = setup.merchant_token(MERCHANT, ("events:read", "webhooks:read", "webhooks:write"))
        await write_events(dsn, 0, STREAM_EVENTS)

        # (a)
        stream_per_s, size = await consume(setup.target, token, STREAM_EVENTS, setup.api_tls())
        async with api_aio_channel(setup.target, setup.api_tls()) as channel:
            sample = await anext(
                aiter(
                    event_pb2_grpc.EventServiceStub(channel).StreamEvents(
                        event_pb2.StreamEventsRequest(
                            parent=f"merchants/{MERCHANT}", after_sequence=STREAM_EVENTS - 1
                        ),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
                )
            )
        baseline_port = free_port()
        child = ctx.Process(
            target=_serve_baseline,
            args=(baseline_port, sample.SerializeToString(), STREAM_EVENTS, setup.certs),
            daemon=True,
        )
        child.start()
        children.append(child)
        wait_for_port(baseline_port)
        stream_baseline, _ = await consume(
            f"127.0.0.1:{baseline_port}", None, STREAM_EVENTS, setup.api_tls()
        )
        print(
            f"(a) StreamEvents: {stream_per_s:,.0f} events/s ({size} B each); "
            f"server stream without the database: {stream_baseline:,.0f}/s"
        )

        # (b)
        receiver_port = free_port()
        child = ctx.Process(target=_serve_receiver, args=(receiver_port,), daemon=True)
        child.start()
        children.append(child)
        wait_for_port(receiver_port)
        url = f"http://127.0.0.1:{receiver_port}/hook"
        with setup.channel(token) as channel:
            webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhookEndpoint(
                webhook_pb2.CreateWebhookEndpointRequest(
                    parent=f"merchants/{MERCHANT}",
                    webhook_endpoint=webhook_pb2.WebhookEndpoint(url=url),
                )
            )
        body = resources.to_json(sample.event)
        delivered_per_s = await deliveries(dsn, STREAM_EVENTS)
        raw_per_s = await raw_posts(url, body, WEBHOOK_EVENTS)
        print(
            f"(b) webhook deliveries: {delivered_per_s:,.0f}/s ({len(body)} B bodies, "
            f"{CONCURRENCY} at once); raw POSTs: {raw_per_s:,.0f}/s"
        )
    finally:
        for child in children:
            child.terminate()
            child.join(5)
        if core is not None:
            core.stop()
        cluster.stop()
    return {
        "bench": "events",
        "value": round(stream_per_s),
        "unit": "events/s",
        "baseline": round(stream_baseline),
        "ratio": round(stream_per_s / stream_baseline, 3),
        "stream_events_per_s": round(stream_per_s),
        "stream_ratio": round(stream_per_s / stream_baseline, 3),
        "webhook_deliveries_per_s": round(delivered_per_s),
        "webhook_baseline_per_s": round(raw_per_s),
        "webhook_ratio": round(delivered_per_s / raw_per_s, 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kassa-bench-") as tmp:
        result = asyncio.run(main_async(Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
