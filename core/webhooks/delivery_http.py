"""The HTTP/1.1 client of webhook deliveries: one shape of request (a POST of a
small JSON body to a merchant's URL), kept-alive connections per endpoint.

Why not aiohttp's: its request was ~40 % of the delivery process's CPU
(docs/performance.md, "The delivery process's CPU per delivery, again").
Process CPU per POST to the events bench's receiver, uvloop, 16 at once,
4,000 POSTs a run, six alternations: aiohttp's session.post as Worker.send
made it 84-96 us, this client (head built, sent, response parsed) 33-37 us.
What it does by hand is only the request head (pre-joined per URL);
responses are parsed by llhttp (httptools), TLS is the standard library's.

Security (the attacker is a merchant who controls the URL and the server that
answers it, or anyone on path):
- it connects only to the addresses the SSRF-checking resolver returned
  (targets.resolver: internal ones dropped), every address literal included;
- https: ssl.create_default_context() (certificates and the hostname
  verified, SNI the URL's host); no proxies, no redirects followed;
- every attempt is bounded: the caller's total timeout (connect, TLS, send,
  the response head and the drain), MAX_HEAD_BYTES before the response head
  completes, MAX_DRAIN_BYTES of body read before the connection is dropped;
- a header value with CR, LF or another control character is refused.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import aiohappyeyeballs
import httptools

from core.webhooks import targets

# Bytes of the response before its head completes: a server streaming an
# endless head is a failed attempt, not memory.
MAX_HEAD_BYTES = 16 * 1024
# Body bytes read to keep a connection for the next request (aiohttp read
# 4096 and dropped the connection when more was left): beyond, closed.
MAX_DRAIN_BYTES = 4096
# A kept connection idle longer than this is closed rather than reused:
# servers close theirs after 5-75 s, and a request racing that close costs a
# retry (aiohttp's keepalive_timeout: 15 s).
KEEPALIVE_S = 15.0
# aiohttp's: the next address is tried when a connect has not succeeded by then.
HAPPY_EYEBALLS_DELAY_S = 0.25

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Controls but horizontal tab: CR and LF above all (header injection).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# What a request target may carry as is (RFC 3986 pchar, "/", "?" and "%",
# so existing escapes stay); anything else (non-ASCII) is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"


class HttpClientError(Exception):
    """An attempt that got no usable response; the message is recorded."""


class ConnectError(HttpClientError):
    """No connection: unresolved, refused, unreachable, TLS refused."""


class ServerDisconnected(HttpClientError):
    """The connection closed before the response was complete."""


class ProtocolError(HttpClientError):
    """A response that is not HTTP/1.x as it should be, or over the limits."""


@dataclass(frozen=True)
class Target:
    """What a URL means to the client, parsed once per URL."""

    https: bool
    host: str  # what is resolved and, for https, verified (IDNA, no brackets)
    port: int
    key: tuple[bool, str, int]  # connections are shared by equal keys
    # "POST <target> HTTP/1.1\r\nHost: <host>\r\n" and the fixed fields.
    head_start: bytes


def _field(name: str, value: str) -> bytes:
    if not _TOKEN.match(name):
        raise ValueError(f"not a header name: {name!r}")
    if _CONTROL.search(value):
        raise ValueError(f"header {name} has a control character")
    return f"{name}: {value}\r\n".encode()


@functools.lru_cache(maxsize=1024)
def target(url: str, fixed: tuple[tuple[str, str], ...] = ()) -> Target:
    """The parsed URL and the head's start with the fixed fields (`fixed`,
    the same for every delivery). Raises ValueError for a URL it cannot send
    to (the worker has refused those already: targets.url_problem)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL with a host")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname.rstrip(".") or parts.hostname
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE)
    if _CONTROL.search(path) or " " in path or _CONTROL.search(host) or " " in host:
        raise ValueError("a URL with whitespace or a control character")
    shown = f"[{host}]" if ":" in host else host
    if port != (443 if https else 80):
        shown = f"{shown}:{port}"
    start = f"POST {path} HTTP/1.1\r\n".encode() + _field("Host", shown)
    start += b"".join(_field(k, v) for k, v in fixed)
    return Target(https, host, port, (https, host, port), start)


@functools.lru_cache(maxsize=64)
def _check_names(names: tuple[str, ...]) -> None:
    """Raises ValueError for a name that is no token (remembered when all are:
    a delivery's names are the same four every time)."""
    for name in names:
        if not _TOKEN.match(name):
            raise ValueError(f"not a header name: {name!r}")


def request_head(start: bytes, fields: Mapping[str, str], content_length: int) -> bytes:
    """The whole request head: `start` (Target.head_start), the delivery's own
    fields, Content-Length. Raises ValueError for a name that is no token or a
    value with a control character (CR/LF: no header injection).

    The names checked once per set of names, the values in one search (a tab
    joins them: a tab is allowed in a value, so the joined text has a control
    character exactly when a value has one), one encode: 2.7 -> 1.95 us a head
    of the delivery's four fields (thread CPU, 20,000 a run, best of five, three
    alternations)."""
    _check_names(tuple(fields))
    if _CONTROL.search("\t".join(fields.values())):
        for name, value in fields.items():
            _field(name, value)  # raises, naming the field
    text = "".join([f"{name}: {value}\r\n" for name, value in fields.items()])
    return start + f"{text}Content-Length: {content_length}\r\n\r\n".encode()


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """Certificates and hostnames verified against the system's CAs; one for
    every endpoint (each context loads the whole CA store)."""
    return ssl.create_default_context()


@dataclass(slots=True)
class Response:
    """The response's status line and Retry-After, as received: the texts are
    made only when read (a delivery reads them only for a non-2xx or a
    Retry-After). The client's thread CPU per POST on uvloop, 16 at once to a
    loopback server in another process, medians of six runs of 4,000, four
    alternations: 13.9, 13.1, 13.3, 12.6 -> 12.6, 12.4, 11.7, 11.4 us, with
    the connection's loop kept (_Connection._loop), against a frozen
    dataclass of both texts made per response."""

    status: int
    reason_bytes: bytes
    retry_after_bytes: bytes | None

    @property
    def reason(self) -> str:
        # Recorded in the attempts' table and logged: no NUL, no controls.
        return _CONTROL.sub("", self.reason_bytes.decode("utf-8", "replace"))

    @property
    def retry_after(self) -> str | None:
        value = self.retry_after_bytes
        return None if value is None else value.decode("latin-1")


class _Connection(asyncio.Protocol):
    """One kept-alive connection: at most one request at a time."""

    def __init__(self) -> None:
        # Made by the loop's create_connection, in the loop: get_running_loop
        # checks the process id (a getpid call, ~0.26 us a time in 3.11).
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._done: asyncio.Future[Response] | None = None
        # The current request's deadline (the loop's time), and the connection's
        # one timer: armed at `_timer_at`, kept across requests (see request).
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._reset()

    def _reset(self) -> None:
        self._received = 0  # bytes of this response so far
        self._head_done = False
        self._reason = b""
        self._retry_after: bytes | None = None
        self._eof_body = True  # no length: the body runs to the connection's close
        self._drained = 0
        self._over = False  # more body than MAX_DRAIN_BYTES: not kept, even if complete
        self._complete = False
        self.reusable = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self._done is None or self._done.done():
            return
        if self._head_done and self._eof_body and not self._complete:
            self._finish()  # a body delimited by the close: complete now
        else:
            where = "before the response" if self._received == 0 else "mid-response"
            self._fail(ServerDisconnected(f"the server closed the connection {where}"))

    def data_received(self, data: bytes) -> None:
        if self._done is None or self._done.done():
            self.close()  # nothing asked for: a connection not to reuse
            return
        self._received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            # After a complete response too (bytes that are no response): the
            # attempt keeps its answer, the connection is not kept.
            self._fail(ProtocolError(f"malformed response ({exc})"))
        if not self._head_done and self._received > MAX_HEAD_BYTES:
            self._fail(ProtocolError(f"response head over {MAX_HEAD_BYTES} bytes"))

    # httptools' callbacks
    def on_message_begin(self) -> None:
        if self._complete:
            # More after the response, unasked: what it holds is no answer
            # to the next request on this connection, which is not kept.
            self.reusable = False

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"retry-after":
            self._retry_after = value
        elif lower in (b"content-length", b"transfer-encoding"):
            self._eof_body = False

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status >= 200:
            self._head_done = True
            if status in (204, 304):
                self._eof_body = False

    def on_body(self, body: bytes) -> None:
        self._drained += len(body)
        if self._drained > MAX_DRAIN_BYTES and self._done is not None:
            self._over = True
            # The answer is in the head; the rest is not read, the connection
            # not kept (as aiohttp's read(4096) left it).
            self._finish()

    def on_message_complete(self) -> None:
        if not self._head_done:  # 1xx: informational, the response follows
            self._reason, self._retry_after, self._eof_body = b"", None, True
            return
        self._complete = True
        self.reusable = (
            not self._over
            and self._parser.should_keep_alive()
            and self._parser.get_http_version() == "1.1"
        )
        self._finish()

    # the attempt's side
    def _finish(self) -> None:
        assert self._done is not None
        if self._done.done():
            return
        if not self._complete:
            self.reusable = False
        self._done.set_result(
            Response(self._parser.get_status_code(), self._reason, self._retry_after)
        )

    def _fail(self, exc: HttpClientError) -> None:
        self.reusable = False
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self.close()

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def started(self) -> bool:
        """Whether any byte of the current response arrived."""
        return self._received > 0

    async def request(self, data: bytes, deadline: float | None = None) -> Response:
        """Sends `data` and waits for the response; at the loop's time
        `deadline`, TimeoutError (the connection is then dropped).

        One timer per connection, not one per request: it stays armed after a
        response, and when it fires before the current request's deadline (a
        later request's) it is armed again at that deadline, so each request
        still fails at its own deadline. A uvloop timer made and cancelled per
        request (a libuv handle each) was ~3 us of a POST. The client's thread
        CPU per POST on a kept connection, uvloop, 16 at once to a loopback
        server in another process, 4,000 a run, medians of eight runs with a
        timeout against eight without, in the same process: the timeout cost
        2.75, 4.5, 2.39, 3.01 -> 0.35, 0.02, 1.34, -0.08 us (four alternations);
        with a timeout, 19.2, 22.9, 16.5 -> 13.5, 16.1, 15.0 us (three)."""
        assert self.transport is not None and (self._done is None or self._done.done())
        self._reset()
        done: asyncio.Future[Response] = self._loop.create_future()
        self._done = done
        self._deadline = deadline
        if deadline is not None and deadline < self._timer_at:
            self._arm(deadline)  # none armed, or armed later than this deadline
        self.transport.write(data)
        return await done

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(at, self._on_timer, at)
        self._timer_at = at

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf

    def _on_timer(self, at: float) -> None:
        """The timer armed for the loop's time `at` fired: the request in
        flight times out if its deadline is `at` or earlier, else the timer is
        armed again at its deadline; with none in flight it stays unarmed."""
        self._timer, self._timer_at = None, math.inf
        done, deadline = self._done, self._deadline
        if done is None or done.done() or deadline is None:
            return
        if deadline <= at:
            done.set_exception(TimeoutError())
        else:
            self._arm(deadline)

    def close(self) -> None:
        self.reusable = False
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        self.reusable = False
        self._disarm()
        if self.transport is not None:
            self.transport.abort()
        self.closed = True


class DeliveryClient:
    """One endpoint's connections (or any URL's, keyed by scheme, host and
    port): at most `limit` kept idle, each reused only after a complete
    HTTP/1.1 response that asked for no close and whose body was drained."""

    def __init__(
        self, allow_private: bool, limit: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._resolver = targets.resolver(allow_private)
        self._limit = limit
        self._ssl = ssl_context
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._open if not c.closed)

    async def post(
        self, target: Target, head: bytes, body: bytes, timeout_s: float | None = None
    ) -> Response:
        """Sends head + body and reads the response's head (and a little of
        its body). With `timeout_s`, TimeoutError once that has passed,
        whatever it was doing (connecting included); without, the caller
        bounds it. Timed out or cancelled, the connection is dropped. A kept
        connection the server had closed before any of the response came is
        retried once on a new one (at least once: the receiver may in rare
        cases see the request twice).

        The timeout of a request on a kept connection is a timer of the loop
        that fails the request's future, not asyncio.timeout around the
        attempt (a Timeout object, the current task looked up, its cancel
        and uncancel). The client's thread CPU per POST on a kept connection,
        uvloop, 16 at once to a loopback server in another process, 4,000 a
        run, six alternations: 18.7 -> 15.3 us (medians). Connecting, rare,
        keeps asyncio.timeout: it awaits the resolver and the connect."""
        if self._closed:
            raise HttpClientError("the client is closed")
        data = head + body
        deadline = None
        if timeout_s is not None:
            deadline = asyncio.get_running_loop().time() + timeout_s
        conn = self._take(target.key)
        if conn is not None:
            try:
                return await self._exchange(target.key, conn, data, deadline)
            except (ServerDisconnected, ConnectionError) as exc:
                if conn.started() or self._closed:
                    raise _as_client_error(exc) from exc
        async with asyncio.timeout_at(deadline):
            conn = await self._connect(target)
        try:
            return await self._exchange(target.key, conn, data, deadline)
        except ConnectionError as exc:
            raise _as_client_error(exc) from exc

    async def _exchange(
        self, key: tuple[bool, str, int], conn: _Connection, data: bytes, deadline: float | None
    ) -> Response:
        try:
            response = await conn.request(data, deadline)
        except BaseException:
            conn.abort()
            self._open.discard(conn)
            raise
        if conn.reusable and conn.usable() and not self._closed:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._limit:
                conn.idle_since = time.monotonic()
                idle.append(conn)
                return response
        conn.close()
        self._open.discard(conn)
        return response

    def _take(self, key: tuple[bool, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        oldest = time.monotonic() - KEEPALIVE_S
        while idle:
            conn = idle.pop()  # the most recently used: the least likely closed
            if conn.usable() and conn.idle_since >= oldest:
                return conn
            conn.close()
            self._open.discard(conn)
        return None

    async def _connect(self, target: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            found = await self._resolver.resolve(target.host, target.port, socket.AF_UNSPEC)
        except OSError as exc:
            raise ConnectError(f"cannot resolve {target.host}: {exc}") from exc
        context = None
        if target.https:
            context = self._ssl or _default_tls()
        # Exactly the addresses the resolver returned (public ones only unless
        # private targets are allowed), raced as aiohttp raced them (RFC 8305:
        # the next address after 250 ms, families interleaved), so that one
        # unreachable address (an IPv6 route that drops packets) does not
        # take the whole timeout.
        addresses = [
            (
                socket.AF_INET6 if ":" in a["host"] else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (a["host"], a["port"], 0, 0) if ":" in a["host"] else (a["host"], a["port"]),
            )
            for a in found
        ]
        where = f"{target.host}:{target.port}"
        try:
            sock = await aiohappyeyeballs.start_connection(
                addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1
            )
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where} ({exc})") from exc
        try:
            _, conn = await loop.create_connection(
                _Connection,
                sock=sock,
                ssl=context,
                server_hostname=target.host if context is not None else None,
            )
        except OSError as exc:  # ssl.SSLError (a certificate refused) among them
            sock.close()
            raise ConnectError(f"cannot connect to {where} ({exc})") from exc
        except BaseException:
            sock.close()
            raise
        if self._closed:  # closed while connecting: not kept, not leaked
            conn.abort()
            raise HttpClientError("the client is closed")
        self._open.add(conn)
        return conn

    async def close(self) -> None:
        """Closes every connection, kept or in use."""
        self._closed = True
        for conn in self._open:
            conn.abort()
        self._open.clear()
        self._idle.clear()
        await self._resolver.close()
        # Let the transports' connection_lost run (sockets released).
        await asyncio.sleep(0)


def _as_client_error(exc: BaseException) -> HttpClientError:
    if isinstance(exc, HttpClientError):
        return exc
    return ServerDisconnected(f"{type(exc).__name__}: {exc}")
