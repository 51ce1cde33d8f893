"""The send-time SSRF guard against a real receiver on loopback: every
internal address form, and a name that resolves to loopback, is refused at
the attempt and the receiver sees nothing; allowed private targets reach it
(so the receiver would have seen the request)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from core.webhooks.settings import WebhookSettings
from core.webhooks.targets import PublicOnlyResolver, internal
from core.webhooks.worker import Claimed, DeliveryWorker, client_session

FORMS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.0.0.1.",
    "localhost",
    "localhost.",
    "[::ffff:127.0.0.1]",
    "[::127.0.0.1]",
    "[64:ff9b::127.0.0.1]",
    "[2002:7f00:1::]",
]


def _claimed(url: str) -> Claimed:
    return Claimed(
        delivery_id=uuid.uuid4(),
        attempt=1,
        give_up_time=datetime.now(UTC) + timedelta(days=1),
        url=url,
        signing_secrets=["whsec_test"],
        event_id="evt_1",
        event_type="invoice.paid",
        body=b"{}",
    )


def test_internal_forms_are_refused_at_send_and_never_reach_the_receiver() -> None:
    async def scenario() -> None:
        seen: list[str] = []

        async def hook(request: web.Request) -> web.Response:
            seen.append(request.host)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        hosts = list(FORMS)
        own = socket.gethostname()
        try:
            if any(internal(i[4][0]) for i in socket.getaddrinfo(own, None)):
                hosts.append(own)  # refused only by what it resolves to
        except OSError:
            pass
        try:
            for allow in (False, True):
                settings = WebhookSettings(allow_private_targets=allow, timeout_s=5)
                worker = DeliveryWorker(None, None, settings, lambda: datetime.now(UTC), None)  # type: ignore[arg-type]
                async with client_session(settings) as session:
                    # Allowed, only the IPv4 forms: the IPv6 ones route nowhere here.
                    for host in FORMS[:8] if allow else hosts:
                        outcome = await worker.send(
                            session, _claimed(f"http://{host}:{port}/hook"), datetime.now(UTC)
                        )
                        if allow:
                            continue
                        assert outcome.status_code != 204, host
                        assert outcome.error, host
                if not allow:
                    assert seen == []
            # Allowed, the plain loopback forms do reach it: the refusals above were the guard.
            assert len(seen) >= 3
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


@pytest.mark.parametrize("host", ["localhost", socket.gethostname()])
def test_the_resolver_drops_internal_addresses(host: str) -> None:
    async def resolve() -> None:
        resolver = PublicOnlyResolver()
        try:
            with pytest.raises(OSError):
                await resolver.resolve(host, 80)
        finally:
            await resolver.close()

    try:
        addresses = socket.getaddrinfo(host, None)
    except OSError:
        pytest.skip(f"{host} does not resolve here")
    if not all(internal(a[4][0]) for a in addresses):
        pytest.skip(f"{host} has a public address here")
    asyncio.run(resolve())
