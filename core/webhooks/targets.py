"""Where webhooks may go: http(s) URLs without credentials, and (SSRF) no
loopback, private, link-local or otherwise internal address unless allowed.

URLs are checked when an endpoint is saved and addresses again when each
attempt connects (the resolver below), so a name that later resolves to an
internal address (DNS rebinding) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL_LEN = 2048


def internal(address: str) -> bool:
    """True for addresses a webhook must not reach in production."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why `url` cannot be a webhook target, or None when it can."""
    if len(url) > MAX_URL_LEN:
        return f"at most {MAX_URL_LEN} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if parts.fragment:
        return "must not have a #fragment"
    if port == 0:
        return "port 0 is not a port"
    if not allow_private:
        host = parts.hostname
        if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
            return "must not target a local or internal host"
        try:
            if internal(host):
                return "must not target a loopback, private or link-local address"
        except ValueError:
            pass  # a name: checked when it is resolved, at each attempt
    return None


class PublicOnlyResolver(AbstractResolver):
    """Resolves as usual, then drops internal addresses; none left is an error."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if not internal(str(r["host"]))]
        if not public:
            raise OSError(f"{host} resolves only to internal addresses (refused)")
        return public

    async def close(self) -> None:
        await self._inner.close()


def resolver(allow_private: bool) -> Any:
    return ThreadedResolver() if allow_private else PublicOnlyResolver()
