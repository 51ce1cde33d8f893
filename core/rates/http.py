"""A minimal HTTP/1.1 GET over asyncio streams, for rate APIs.

Stdlib only: a rate lookup needs one GET with a hard deadline, not a client
library. One connection per request (Connection: close) keeps it simple and
leaves nothing half-read in a pool when the deadline cuts a request short.
The whole exchange — connect, TLS, request, headers, body — shares one
timeout_s, so a server that trickles bytes cannot hold a quote hostage.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from core.rates.sources import RateSourceError

MAX_BODY_BYTES = 1 << 20  # rate responses are kilobytes; anything bigger is wrong
_MAX_HEADER_LINES = 100


async def http_get(
    url: str,
    timeout_s: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> tuple[int, bytes]:
    """(status, body) of GET url; RateSourceError on timeout or any transport failure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RateSourceError(f"unsupported URL {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(
                parts.hostname,
                port,
                (ssl_context or ssl.create_default_context()) if tls else None,
                target,
                host_header,
                max_body_bytes,
            )
    except TimeoutError:
        raise RateSourceError(f"no answer within {timeout_s:g} s") from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise RateSourceError(f"transport error: {type(exc).__name__}: {exc}"[:200]) from None


async def _exchange(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    target: str,
    host_header: str,
    max_body_bytes: int,
) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl_context, server_hostname=host if ssl_context else None
    )
    try:
        writer.write(
            (
                f"GET {target} HTTP/1.1\r\n"
                f"Host: {host_header}\r\n"
                "User-Agent: kassa-rates/1\r\n"
                "Accept: application/json\r\n"
                "Accept-Encoding: identity\r\n"
                "Connection: close\r\n\r\n"
            ).encode("ascii")
        )
        await writer.drain()
        status = _status(await reader.readline())
        headers = await _headers(reader)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _chunked(reader, max_body_bytes)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if not 0 <= length <= max_body_bytes:
                raise RateSourceError(f"response body of {length} bytes is too large")
            body = await reader.readexactly(length)
        else:
            body = await reader.read(max_body_bytes + 1)
            if len(body) > max_body_bytes:
                raise RateSourceError("response body is too large")
        return status, body
    finally:
        writer.close()


def _status(line: bytes) -> int:
    if not line:
        raise RateSourceError("connection closed before a response")
    fields = line.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/1.") or not fields[1].isdigit():
        raise RateSourceError(f"malformed status line {line[:60]!r}")
    return int(fields[1])


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise RateSourceError("connection closed inside the headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise RateSourceError(f"malformed header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    raise RateSourceError("too many header lines")


async def _chunked(reader: asyncio.StreamReader, max_body_bytes: int) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            # Trailers end with an empty line; we do not need them.
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        if len(body) + size > max_body_bytes:
            raise RateSourceError("response body is too large")
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF after each chunk
