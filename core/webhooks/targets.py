"""Where webhooks may go: http(s) URLs without credentials, and (SSRF) no
loopback, private, link-local or otherwise internal address unless allowed.

The attacker is a merchant (or whoever holds its key) pointing a webhook at
the platform's own network. Every host goes through one canonicalisation
(canonical_ip: each IPv4 notation, trailing dots, IPv4 embedded in IPv6)
before it is judged. URLs are checked, and names resolved, when an endpoint
is saved; at each attempt the URL is checked again and the resolver below
drops internal addresses, and the deliveries' client
(core/webhooks/delivery_http.DeliveryClient._connect) connects to exactly
the addresses it returned (so a name that later resolves to an internal
address, DNS rebinding, is refused too, and the checked address is the one
connected to).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL_LEN = 2048

# Names that are local by definition (RFC 6761, RFC 6762) or by convention.
_LOCAL_SUFFIXES = (".localhost", ".internal", ".local", ".home.arpa", ".lan", ".intranet")
# NAT64 (RFC 6052 well-known and RFC 8215 local-use) prefixes: the low 32
# bits are the IPv4 address a translator connects to.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _ipv4_part(text: str) -> int | None:
    """One part of a legacy IPv4 notation: decimal, 0x hex or 0-led octal."""
    if not text:
        return None
    if text[:2].lower() == "0x":
        digits, base = text[2:] or "0", 16
    elif len(text) > 1 and text[0] == "0":
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    if not digits.isascii() or not digits.isalnum() or len(digits) > 32:
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Every notation inet_aton (and so the resolver, curl, browsers) accepts:
    127.0.0.1, 127.1, 2130706433, 0x7f000001, 0177.0.0.1, 10.1 …; None for
    anything else.

    Hand-written rather than socket.inet_aton: glibc's stops at whitespace
    and accepts what follows ("127.0.0.1 x"), and its result depends on the
    platform; this follows the WHATWG URL host parser exactly.
    """
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts.pop()  # one trailing dot, as the URL parser allows
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_part(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *head, last = values
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(values)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _looks_numeric(host: str) -> bool:
    """A host whose last label is a number is meant as an IPv4 address (WHATWG)."""
    labels = host.rstrip(".").split(".")
    return _ipv4_part(labels[-1]) is not None


def canonical_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `address` names in any notation, with an IPv4 address
    embedded in IPv6 (mapped, compatible, NAT64, 6to4, Teredo) unwrapped,
    or None for a name."""
    text = address.strip("[]").split("%", 1)[0]
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text)
    except ValueError:
        parsed = parse_ipv4(text)
        if parsed is None:
            return None
        return parsed
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return embedded
    return ip


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client: where the packets end up
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in _NAT64):
        return low32
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves
        return low32
    return None


def internal(address: str) -> bool:
    """True for addresses a webhook must not reach in production; a string
    that is no address in any notation is internal too (default deny)."""
    ip = canonical_ip(address)
    if ip is None:
        return True
    return not ip.is_global or ip.is_multicast


def host_problem(host: str, allow_private: bool) -> str | None:
    """Why `host` (a URL's hostname) cannot be a webhook target, or None."""
    name = host.lower().rstrip(".")
    if not name:
        return "must name a host"
    if allow_private:
        return None
    if name == "localhost" or name.endswith(_LOCAL_SUFFIXES):
        return "must not target a local or internal host"
    ip = canonical_ip(name)
    if ip is None and _looks_numeric(name):
        return "is not a valid address"
    if ip is not None and (not ip.is_global or ip.is_multicast):
        return "must not target a loopback, private or link-local address"
    return None  # a name: its addresses are checked at save and at each attempt


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why `url` cannot be a webhook target, or None when it can."""
    if len(url) > MAX_URL_LEN:
        return f"at most {MAX_URL_LEN} characters"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "must not contain whitespace or control characters"
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
    return host_problem(parts.hostname, allow_private)


async def resolved_problem(url: str, allow_private: bool) -> str | None:
    """url_problem, then the addresses the host resolves to now: any internal
    one refuses the URL. A name that does not resolve (yet) is accepted here
    and checked again at every attempt."""
    problem = url_problem(url, allow_private)
    if problem is not None or allow_private:
        return problem
    host = urlsplit(url).hostname
    assert host is not None
    if canonical_ip(host) is not None:
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.rstrip("."), None, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        return None
    if any(internal(str(info[4][0])) for info in infos):
        return "resolves to a loopback, private or link-local address"
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
