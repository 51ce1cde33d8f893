"""Webhook targets (SSRF): one canonicalisation of every host, as the
attacker (a merchant's key pointing a webhook at the platform's network)
would write an internal address."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.webhooks.targets import canonical_ip, internal, parse_ipv4, url_problem
from tests.support.ssrf import INTERNAL_HOSTS


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_internal_forms_are_refused_at_save(host: str) -> None:
    assert url_problem(f"https://{host}/hook", allow_private=False) is not None
    assert url_problem(f"https://{host}:8443/hook", allow_private=False) is not None


@pytest.mark.parametrize(
    "host",
    ["example.com", "hooks.example.com.", "93.184.216.34", "[2606:2800:220:1:248:1893:25c8:1946]"],
)
def test_public_hosts_are_accepted(host: str) -> None:
    assert url_problem(f"https://{host}/hook", allow_private=False) is None


@pytest.mark.parametrize(
    "url",
    ["https://example.com/\n", "https://exa mple.com/", "https://example.com/\x00", "ftp://x.y/"],
)
def test_malformed_urls_are_refused(url: str) -> None:
    assert url_problem(url, allow_private=False) is not None


def test_send_time_check_judges_resolved_addresses() -> None:
    for address in ("127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:c0a8:101::1"):
        assert internal(address)
    assert internal("not an address")  # default deny
    assert not internal("93.184.216.34")
    assert not internal("2606:2800:220:1:248:1893:25c8:1946")


def _notations(ip: ipaddress.IPv4Address, choice: int) -> str:
    b = ip.packed
    value = int(ip)
    forms = [
        str(ip),
        str(value),
        hex(value),
        "0" + oct(value)[2:] if value else "0",
        f"{b[0]}.{int.from_bytes(b[1:], 'big')}",
        f"{b[0]}.{b[1]}.{int.from_bytes(b[2:], 'big')}",
        ".".join(hex(x) for x in b),
        ".".join("0" + oct(x)[2:] for x in b),
        str(ip) + ".",
    ]
    return forms[choice % len(forms)]


addresses = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@given(addresses, st.integers(0, 100))
def test_every_ipv4_notation_canonicalises_to_its_address(
    ip: ipaddress.IPv4Address, choice: int
) -> None:
    text = _notations(ip, choice)
    assert parse_ipv4(text) == ip, text
    assert canonical_ip(text) == ip


@given(addresses, st.integers(0, 4))
def test_ipv4_embedded_in_ipv6_is_judged_as_the_ipv4_address(
    ip: ipaddress.IPv4Address, form: int
) -> None:
    value = int(ip)
    v6 = [
        (0xFFFF << 32) | value,  # mapped
        (0x0064FF9B << 96) | value,  # NAT64
        (0x2002 << 112) | (value << 80),  # 6to4
        value,  # compatible
        (0x0064FF9B0001 << 80) | value,  # local-use NAT64
    ][form]
    address = ipaddress.IPv6Address(v6)
    if form == 3 and value <= 1:
        return  # :: and ::1 are IPv6 addresses of their own
    assert canonical_ip(str(address)) == ip
    assert internal(str(address)) == internal(str(ip))
    assert (url_problem(f"http://[{address}]/", False) is None) == (
        url_problem(f"http://{ip}/", False) is None
    )


@given(addresses, st.integers(0, 100))
def test_a_notation_is_refused_exactly_when_its_address_is_internal(
    ip: ipaddress.IPv4Address, choice: int
) -> None:
    refused = url_problem(f"https://{_notations(ip, choice)}/", False) is not None
    assert refused == (not ip.is_global or ip.is_multicast)


@given(st.text(max_size=40))
def test_parse_ipv4_never_raises(text: str) -> None:
    result = parse_ipv4(text)
    assert result is None or isinstance(result, ipaddress.IPv4Address)
