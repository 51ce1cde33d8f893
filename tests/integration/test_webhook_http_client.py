"""The deliveries' HTTP client (core/webhooks/delivery_http.py) against real
servers on loopback: aiohttp.web where an ordinary server will do, raw
asyncio servers for the answers no ordinary server gives (a malformed status
line, an endless head, a close mid-response). Outcomes are checked through
DeliveryWorker.send, the texts the attempts record."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from core.webhooks import delivery_http, retry
from core.webhooks.delivery_http import DeliveryClient
from core.webhooks.settings import WebhookSettings
from core.webhooks.worker import Claimed, DeliveryWorker
from localstack import devcerts
from tests.support.raw_http import raw_server, read_request


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test on asyncio's loop and on uvloop's (the delivery processes run
    uvloop: core/delivery_main.py)."""
    if request.param == "uvloop":
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield str(request.param)
    finally:
        asyncio.set_event_loop_policy(None)


SETTINGS = WebhookSettings(allow_private_targets=True, timeout_s=2)


def _claimed(url: str) -> Claimed:
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    body = b'{"id": "evt_1"}'
    return Claimed(uuid.uuid4(), 1, tomorrow, url, ["whsec_test"], "evt_1", "invoice.paid", body)


def _worker(settings: WebhookSettings = SETTINGS) -> DeliveryWorker:
    return DeliveryWorker(None, None, settings, lambda: datetime.now(UTC), None)  # type: ignore[arg-type]


async def send(
    client: DeliveryClient, url: str, settings: WebhookSettings = SETTINGS
) -> retry.Outcome:
    """One attempt as the worker makes it, its outcome as recorded."""
    return await _worker(settings).send(client, _claimed(url), datetime.now(UTC))


async def ok(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def each_on_its_own_connection(
    client: DeliveryClient, url: str, times: int, pause_s: float = 0.0
) -> None:
    """`times` attempts, each answered 200, none leaving its connection kept
    (`pause_s` after each, before that is looked at)."""
    for _ in range(times):
        outcome = await send(client, url)
        assert (outcome.status_code, outcome.error) == (200, "")
        await asyncio.sleep(pause_s)
        assert client.open_connections == 0


class Counted:
    """An aiohttp.web server on loopback that counts the connections it accepted."""

    def __init__(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.handler = handler
        self.peers: set[object] = set()
        self.requests: list[web.Request] = []
        self.bodies: list[bytes] = []

    @property
    def connections(self) -> int:
        """Connections that carried a request (each its own client port)."""
        return len(self.peers)

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        self.bodies.append(await request.read())
        return await self.handler(request)


@asynccontextmanager
async def web_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
    **kwargs: object,
) -> AsyncIterator[tuple[Counted, int]]:
    counted = Counted(handler)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", counted._hook)
    runner = web.AppRunner(app, access_log=None, **kwargs)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield counted, port
    finally:
        await runner.cleanup()


def _client_sockets(server_ports: set[int]) -> int:
    """This process's TCP sockets but the servers' own (listening or accepted)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            link = fd.readlink().name
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[9] in inodes and local_port not in server_ports:
                found += 1
    return found


def test_success_keeps_one_connection_alive_and_sends_the_headers() -> None:
    async def scenario() -> None:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(status=204)

        async with web_server(ok) as (server, port):
            worker = _worker()
            async with DeliveryClient(True, 4) as client:
                claimed = _claimed(f"http://127.0.0.1:{port}/hook?a=1")
                for _ in range(5):
                    outcome = await worker.send(client, claimed, datetime.now(UTC))
                    assert (outcome.status_code, outcome.error) == (204, "")
                assert client.open_connections == 1
        assert server.connections == 1
        request = server.requests[0]
        assert request.path_qs == "/hook?a=1"
        assert request.method == "POST" and request.version == (1, 1)
        assert server.bodies == [claimed.body] * 5
        h = request.headers
        assert h["Host"] == f"127.0.0.1:{port}"
        assert h["Content-Type"] == "application/json"
        assert h["User-Agent"] == "Kassa-Webhooks/1"
        assert h["Content-Length"] == str(len(claimed.body))
        assert h["Kassa-Event-Id"] == claimed.event_id
        assert h["Kassa-Event-Type"] == claimed.event_type
        assert h["Kassa-Delivery-Id"] == str(claimed.delivery_id)
        assert h["Kassa-Signature"].startswith("t=")

    asyncio.run(scenario())


def test_concurrent_posts_use_at_most_the_limit_of_kept_connections() -> None:
    async def scenario() -> None:
        async def ok(request: web.Request) -> web.Response:
            await asyncio.sleep(0.01)
            return web.Response(status=200)

        async with web_server(ok) as (server, port):
            worker = _worker()
            slots = asyncio.Semaphore(3)
            async with DeliveryClient(True, 3) as client:
                claimed = _claimed(f"http://127.0.0.1:{port}/hook")

                async def one() -> None:
                    async with slots:
                        outcome = await worker.send(client, claimed, datetime.now(UTC))
                    assert outcome.status_code == 200

                for _ in range(3):
                    await asyncio.gather(*(one() for _ in range(9)))
        assert server.connections == 3

    asyncio.run(scenario())


def test_connection_close_is_honoured() -> None:
    async def closing(request: web.Request) -> web.Response:
        return web.Response(status=200, headers={"Connection": "close"})

    async def scenario() -> None:
        async with web_server(closing) as (server, port), DeliveryClient(True, 4) as client:
            await each_on_its_own_connection(client, f"http://127.0.0.1:{port}/", 3)
        assert server.connections == 3

    asyncio.run(scenario())


def test_an_http_10_response_is_used_and_its_connection_not_kept() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # Keep-alive asked for, but HTTP/1.0: not reused.
        writer.write(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()  # holds the connection open until the client closes it

    async def scenario() -> None:
        async with (
            raw_server(answer) as (accepted, port),
            DeliveryClient(True, 4) as client,
        ):
            await each_on_its_own_connection(client, f"http://127.0.0.1:{port}/", 2)
        assert accepted[0] == 2

    asyncio.run(scenario())


def test_a_chunked_body_is_drained_and_a_long_one_drops_the_connection() -> None:
    sizes = iter([100, delivery_http.MAX_DRAIN_BYTES * 4, 100, 100])

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"x" * next(sizes))
        await response.write_eof()
        return response

    async def scenario() -> None:
        async with web_server(chunked) as (server, port), DeliveryClient(True, 4) as client:
            url = f"http://127.0.0.1:{port}/"
            outcomes = [await send(client, url) for _ in range(4)]
        assert [o.status_code for o in outcomes] == [200] * 4
        # The first kept; the long one's connection dropped; the next two share a new one.
        assert server.connections == 2

    asyncio.run(scenario())


def test_an_oversized_response_head_is_refused_and_the_connection_closed() -> None:
    async def scenario() -> None:
        done = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\n")
            try:
                for _ in range(1000):  # an endless header, a kilobyte a write
                    writer.write(b"X-Pad: " + b"a" * 1024 + b"\r\n")
                    await writer.drain()
                    await asyncio.sleep(0)
                await reader.read()  # EOF: the client closed it
            finally:
                done.set()

        async with raw_server(answer) as (_, port), DeliveryClient(True, 4) as client:
            outcome = await send(client, f"http://127.0.0.1:{port}/")
            assert outcome.status_code is None
            assert outcome.error == (
                f"ProtocolError: response head over {delivery_http.MAX_HEAD_BYTES} bytes"
            )
            assert client.open_connections == 0
            await asyncio.wait_for(done.wait(), 2)

    asyncio.run(scenario())


def test_a_slow_server_hits_the_timeout() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=200)

    async def scenario() -> None:
        settings = WebhookSettings(allow_private_targets=True, timeout_s=0.3)
        async with web_server(slow) as (_, port), DeliveryClient(True, 4) as client:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            outcome = await send(client, f"http://127.0.0.1:{port}/", settings)
            assert loop.time() - t0 < 2
            assert (outcome.status_code, outcome.error) == (None, "timeout after 0.3 s")
            assert client.open_connections == 0

    asyncio.run(scenario())


def test_a_server_closing_mid_response_is_a_failed_attempt() -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Le",  # mid-head
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # mid-body
        ]
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(next(answers))
        await writer.drain()

    async def scenario() -> None:
        async with (
            raw_server(answer) as (accepted, port),
            DeliveryClient(True, 4) as client,
        ):
            for _ in range(2):
                outcome = await send(client, f"http://127.0.0.1:{port}/")
                assert outcome.status_code is None
                assert outcome.error == (
                    "ServerDisconnected: the server closed the connection mid-response"
                )
        assert accepted[0] == 2  # a fresh connection each: not retried

    asyncio.run(scenario())


def test_a_stale_kept_connection_is_retried_once_on_a_fresh_one() -> None:
    """The server answers one request per connection and closes it quietly
    later, as servers close idle keep-alive connections: the next request on
    the kept one meets the close before any response and goes out again on a
    new connection. A response that had started is not retried."""

    async def scenario() -> None:
        sent = asyncio.Event()
        release = asyncio.Event()
        mode = ["quiet"]

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            if mode[0] == "quiet":
                # Reads the next request, then closes without a byte.
                await read_request(reader)
                return
            await read_request(reader)
            sent.set()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-")
            await writer.drain()
            await release.wait()

        async with (
            raw_server(answer) as (accepted, port),
            DeliveryClient(True, 4) as client,
        ):
            url = f"http://127.0.0.1:{port}/"
            first = await send(client, url)
            second = await send(client, url)
            assert (first.status_code, second.status_code) == (200, 200)
            assert accepted[0] == 2  # the second's retry
            mode[0] = "started"
            await send(client, url)  # kept
            accepted_before = accepted[0]
            task = asyncio.create_task(send(client, url))
            await sent.wait()
            await asyncio.sleep(0.05)
            release.set()
            outcome = await task
            assert outcome.status_code is None
            assert "mid-response" in outcome.error
            assert accepted[0] == accepted_before  # not retried

    asyncio.run(scenario())


def test_a_kept_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def scenario() -> None:
        async with (
            web_server(ok, keepalive_timeout=0.1) as (server, port),
            DeliveryClient(True, 4) as client,
        ):
            # The server closes each kept connection during the pause.
            await each_on_its_own_connection(client, f"http://127.0.0.1:{port}/", 2, pause_s=0.4)
        assert server.connections == 2

    asyncio.run(scenario())


def test_a_malformed_status_line_is_a_failed_attempt() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        async with raw_server(answer) as (_, port), DeliveryClient(True, 4) as client:
            outcome = await send(client, f"http://127.0.0.1:{port}/")
            assert outcome.status_code is None
            assert outcome.error.startswith("ProtocolError: malformed response"), outcome
            assert client.open_connections == 0

    asyncio.run(scenario())


def test_redirects_are_not_followed_and_retry_after_is_passed_through() -> None:
    async def answers(request: web.Request) -> web.Response:
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "/elsewhere"})
        if request.path == "/busy":
            return web.Response(status=503, headers={"Retry-After": "120"})
        return web.Response(status=200)

    async def scenario() -> None:
        async with web_server(answers) as (server, port), DeliveryClient(True, 4) as client:
            moved = await send(client, f"http://127.0.0.1:{port}/moved")
            busy = await send(client, f"http://127.0.0.1:{port}/busy")
        assert (moved.status_code, moved.error) == (302, "HTTP 302 Found")
        assert [r.path for r in server.requests] == ["/moved", "/busy"]
        assert (busy.status_code, busy.error) == (503, "HTTP 503 Service Unavailable")
        assert busy.retry_after_s == 120

    asyncio.run(scenario())


def _tls_pair(tmp: Path, names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str]]:
    """A server's context with a certificate for `names` from a fresh CA, and a
    client's trusting that CA."""
    devcerts.make(tmp, hosts=names, adapters=[])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "core-api.pem", tmp / "core-api.key")
    seen_sni: list[str] = []

    def sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        seen_sni.append(name or "")

    server.sni_callback = sni  # type: ignore[assignment]
    client = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    return server, client, seen_sni


def test_tls_verifies_the_certificate_and_sends_the_host_as_sni(tmp_path: Path) -> None:
    async def scenario() -> None:
        server_context, client_context, seen_sni = _tls_pair(tmp_path, ["localhost"])
        async with (
            web_server(ok, server_context) as (server, port),
            DeliveryClient(True, 4, client_context) as client,
        ):
            for _ in range(2):
                outcome = await send(client, f"https://localhost:{port}/hook")
                assert (outcome.status_code, outcome.error) == (200, "")
        assert server.connections == 1 and seen_sni == ["localhost"]
        assert server.requests[0].headers["Host"] == f"localhost:{port}"

    asyncio.run(scenario())


def test_tls_with_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        server_context, client_context, _ = _tls_pair(tmp_path, ["other.example"])
        async with (
            web_server(ok, server_context) as (server, port),
            DeliveryClient(True, 4, client_context) as client,
        ):
            outcome = await send(client, f"https://localhost:{port}/hook")
            assert outcome.status_code is None
            assert outcome.error.startswith("ConnectError: cannot connect to localhost")
            assert "certificate verify failed" in outcome.error, outcome.error
        assert server.requests == []

    asyncio.run(scenario())


def test_tls_with_an_unknown_ca_is_refused_by_default(tmp_path: Path) -> None:
    async def scenario() -> None:
        server_context, _, _ = _tls_pair(tmp_path, ["localhost"])
        async with (
            web_server(ok, server_context) as (server, port),
            DeliveryClient(True, 4) as client,  # the system's CAs only
        ):
            outcome = await send(client, f"https://localhost:{port}/hook")
        assert outcome.status_code is None and "certificate verify failed" in outcome.error
        assert server.requests == []

    asyncio.run(scenario())


def test_a_refused_connection_names_connect() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with DeliveryClient(True, 4) as client:
            outcome = await send(client, f"http://127.0.0.1:{port}/")
        assert outcome.status_code is None and "Connect" in outcome.error

    asyncio.run(scenario())


def test_a_request_on_a_kept_connection_times_out_at_the_posts_timeout() -> None:
    """post(timeout_s=...) bounds the request itself (a timer of the loop on the
    kept connection, asyncio.timeout while connecting): TimeoutError, the
    connection dropped, and the next post gets a new one that works."""
    served = [0]

    async def first_answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            served[0] += 1
            if served[0] == 2:
                await asyncio.sleep(5)  # the second request is never answered
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    async def scenario() -> None:
        async with (
            raw_server(first_answered) as (accepted, port),
            DeliveryClient(True, 4) as client,
        ):
            where = delivery_http.target(f"http://127.0.0.1:{port}/")
            head = delivery_http.request_head(where.head_start, {}, 2)
            assert (await client.post(where, head, b"{}", 2.0)).status == 200
            assert client.open_connections == 1
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await client.post(where, head, b"{}", 0.2)
            assert 0.15 < loop.time() - t0 < 2
            assert client.open_connections == 0
            assert (await client.post(where, head, b"{}", 2.0)).status == 200
            assert accepted[0] == 2

    asyncio.run(scenario())


def test_no_socket_is_left_after_close() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def scenario() -> None:
        async with web_server(ok) as (_, port), raw_server(slow) as (_, slow_port):
            assert _client_sockets({port, slow_port}) == 0
            client = DeliveryClient(True, 8)
            settings = WebhookSettings(allow_private_targets=True, timeout_s=0.2)
            await asyncio.gather(
                *(send(client, f"http://127.0.0.1:{port}/", settings) for _ in range(6)),
                send(client, f"http://127.0.0.1:{slow_port}/", settings),
            )
            # One in flight when closed, too.
            task = asyncio.create_task(send(client, f"http://127.0.0.1:{slow_port}/"))
            await asyncio.sleep(0.1)
            assert client.open_connections >= 2
            await client.close()
            outcome = await task
            assert outcome.status_code is None
            await asyncio.sleep(0.05)
            assert client.open_connections == 0
            assert _client_sockets({port, slow_port}) == 0

    asyncio.run(scenario())


def test_the_client_itself_connects_to_no_internal_address() -> None:
    """Behind the worker's URL check, the client's resolver: an address
    literal or a name for loopback is refused and nothing is connected to."""

    async def scenario() -> None:
        async with web_server(ok) as (server, port), DeliveryClient(False, 4) as client:
            for host in ("127.0.0.1", "localhost"):
                where = delivery_http.target(f"http://{host}:{port}/")
                head = delivery_http.request_head(where.head_start, {}, 2)
                try:
                    await client.post(where, head, b"{}")
                except delivery_http.ConnectError as exc:
                    assert "internal" in str(exc), exc
                else:
                    raise AssertionError(f"{host} was connected to")
            assert client.open_connections == 0
        assert server.requests == []

    asyncio.run(scenario())


def test_informational_responses_are_skipped_and_the_reason_has_no_controls() -> None:
    answers = iter(
        [
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            # llhttp passes a NUL in the reason (aiohttp's parser too): recorded
            # as is it would fail the attempts' batch in PostgreSQL (no NUL in text).
            b"HTTP/1.1 500 Bad\x00\x01\x7f\tThing\r\nContent-Length: 0\r\n\r\n",
        ]
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(next(answers))
            await writer.drain()

    async def scenario() -> None:
        async with raw_server(answer) as (_, port), DeliveryClient(True, 4) as client:
            url = f"http://127.0.0.1:{port}/"
            hinted = await send(client, url)
            failed = await send(client, url)
        assert (hinted.status_code, hinted.error) == (200, "")
        assert (failed.status_code, failed.error) == (500, "HTTP 500 Bad\tThing")

    asyncio.run(scenario())


def test_an_address_that_never_answers_does_not_take_the_whole_timeout() -> None:
    """The resolved addresses are raced (as aiohttp's connects were): the first
    one here is a listener whose accept queue is full (Linux drops the SYN, the
    connect hangs), the second answers; the attempt succeeds well inside the
    timeout."""

    class TwoAddresses:
        def __init__(self, ports: list[int]) -> None:
            self.ports = ports

        async def resolve(self, host: str, port: int, family: int) -> list[dict[str, object]]:
            return [
                {"hostname": host, "host": "127.0.0.1", "port": p, "family": socket.AF_INET}
                for p in self.ports
            ]

        async def close(self) -> None:
            pass

    async def scenario() -> None:
        full = socket.socket()
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        for _ in range(2):  # backlog 0 holds one; the rest is dropped
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(full.getsockname())
            fillers.append(s)
        await asyncio.sleep(0.1)
        try:
            async with web_server(ok) as (_, port), DeliveryClient(True, 4) as client:
                client._resolver = TwoAddresses([full.getsockname()[1], port])
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                outcome = await send(client, f"http://hooks.example:{port}/")
                assert (outcome.status_code, outcome.error) == (200, "")
                assert loop.time() - t0 < 1.5
        finally:
            for s in [*fillers, full]:
                s.close()

    asyncio.run(scenario())


def test_bytes_after_the_response_make_the_connection_not_kept() -> None:
    """A server that sends more than one response (here the start of a second,
    or bytes that are none) cannot have it taken as the answer to the next
    request on the connection: the next request goes on a new one."""
    extras = iter([b"HTTP/1.1 500 Smuggled\r\nContent-Length: 0\r\n", b"\x00garbage\r\n"])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + next(extras, b""))
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        async with raw_server(answer) as (accepted, port), DeliveryClient(True, 4) as client:
            outcomes = [await send(client, f"http://127.0.0.1:{port}/") for _ in range(3)]
        assert [(o.status_code, o.error) for o in outcomes] == [(200, "")] * 3
        assert accepted[0] == 3

    asyncio.run(scenario())
