"""A kept connection's requests share one loop timer (core/webhooks/delivery_http
_Connection.request), and each request still times out at its own deadline:
a later request's shorter timeout arms it earlier, and a timer armed for an
earlier request's deadline, firing while a later one is in flight, is armed
again at that one's deadline rather than failing it early."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from core.webhooks import delivery_http
from core.webhooks.delivery_http import DeliveryClient
from tests.support.raw_http import raw_server, read_request

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
Post = Callable[[float], Awaitable[delivery_http.Response]]


def _answering_the_first(answered: int) -> Any:
    """A server answering the first `answered` requests of a connection, then none."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            await read_request(reader)
            served += 1
            if served > answered:
                await asyncio.sleep(30)
            writer.write(OK)
            await writer.drain()

    return answer


def test_a_kept_connections_requests_share_one_timer() -> None:
    """20 requests, each with a timeout, on one kept connection: at most one timer
    made (one per request before: ~3 us of each POST on uvloop)."""

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        made = [0]
        call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(getattr(callback, "__self__", None), delivery_http._Connection):
                made[0] += 1
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting  # type: ignore[method-assign]
        async with (
            raw_server(_answering_the_first(1000)) as (accepted, port),
            DeliveryClient(True, 4) as client,
        ):
            where = delivery_http.target(f"http://127.0.0.1:{port}/")
            head = delivery_http.request_head(where.head_start, {}, 2)
            for _ in range(20):
                assert (await client.post(where, head, b"{}", 5.0)).status == 200
            assert accepted[0] == 1
        return made[0]

    asyncio.set_event_loop_policy(None)  # asyncio's own loop: its call_at can be wrapped
    assert asyncio.run(scenario()) == 1


@asynccontextmanager
async def _kept_connection(first_timeout_s: float) -> AsyncIterator[Post]:
    """A client whose one connection has answered a request posted with
    `first_timeout_s` (its timer armed at that deadline); the next requests on
    it are never answered. Yields a post with a timeout, on that connection."""
    async with (
        raw_server(_answering_the_first(1)) as (_, port),
        DeliveryClient(True, 4) as client,
    ):
        where = delivery_http.target(f"http://127.0.0.1:{port}/")
        head = delivery_http.request_head(where.head_start, {}, 2)

        async def post(timeout_s: float) -> delivery_http.Response:
            return await client.post(where, head, b"{}", timeout_s)

        assert (await post(first_timeout_s)).status == 200
        yield post
        assert client.open_connections == 0


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_later_shorter_timeout_fails_at_its_own_deadline(loop_kind: str) -> None:
    async def scenario() -> None:
        async with _kept_connection(20.0) as post:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await post(0.3)
            assert 0.25 < loop.time() - t0 < 5

    _run(scenario(), loop_kind)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_timer_armed_for_an_earlier_request_does_not_fail_a_later_one_early(
    loop_kind: str,
) -> None:
    async def scenario() -> None:
        # The connection's timer is armed at the first request's deadline, 0.4 s on.
        async with _kept_connection(0.4) as post:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0.2)
            t0 = loop.time()
            # Deadline 0.8 s on: the timer fires ~0.2 s in, for the first
            # request's deadline, and must wait for this one's.
            with pytest.raises(TimeoutError):
                await post(0.8)
            assert 0.7 < loop.time() - t0 < 5

    _run(scenario(), loop_kind)


def _run(scenario: Any, loop_kind: str) -> None:
    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(scenario)
    else:
        asyncio.set_event_loop_policy(None)
        asyncio.run(scenario)
