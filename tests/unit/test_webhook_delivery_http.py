"""The request head the deliveries' HTTP client builds by hand
(core/webhooks/delivery_http.py): whatever the URL and the field values, it
is one well-formed HTTP/1.1 request that a real parser (llhttp) reads back as
exactly the fields given, with Content-Length the body's length; a value with
CR, LF or another control character is refused, never sent."""

from __future__ import annotations

import re

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.webhooks import targets
from core.webhooks.delivery_http import request_head, target

FIXED = (("Content-Type", "application/json"), ("User-Agent", "Kassa-Webhooks/1"))
NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class _Read:
    def __init__(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def _parsed(data: bytes) -> _Read:
    read = _Read()
    parser = httptools.HttpRequestParser(read)
    parser.feed_data(data)
    assert read.complete and parser.get_method() == b"POST"
    assert parser.get_http_version() == "1.1"
    return read


@given(
    fields=st.dictionaries(NAMES, st.text(max_size=40), max_size=6),
    body=st.binary(max_size=300),
)
def test_the_head_reads_back_as_the_fields_given_or_is_refused(
    fields: dict[str, str], body: bytes
) -> None:
    where = target("https://example.com/hook", FIXED)
    if any(CONTROL.search(v) for v in fields.values()):
        with pytest.raises(ValueError):
            request_head(where.head_start, fields, len(body))
        return
    head = request_head(where.head_start, fields, len(body))
    assert head.count(b"\r\n\r\n") == 1 and head.endswith(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert b"\r" not in head.replace(b"\r\n", b"")
    read = _parsed(head + body)
    assert read.url == b"/hook" and read.body == body
    expected = [("Host", "example.com"), *FIXED, *fields.items()]
    expected.append(("Content-Length", str(len(body))))
    # Surrounding blanks are no part of a value (RFC 9110 5.5; llhttp strips
    # some of them), so compared without.
    assert [(k, v.strip(b" \t")) for k, v in read.fields] == [
        (k.encode(), v.strip(" \t").encode()) for k, v in expected
    ]


@given(name=st.text(min_size=1, max_size=20))
def test_a_name_that_is_no_token_is_refused(name: str) -> None:
    where = target("http://example.com/", FIXED)
    if re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
        request_head(where.head_start, {name: "x"}, 0)
    else:
        with pytest.raises(ValueError):
            request_head(where.head_start, {name: "x"}, 0)


@given(
    path=st.text(max_size=40),
    query=st.text(max_size=20),
    port=st.integers(1, 65535),
    https=st.booleans(),
)
def test_any_url_the_worker_accepts_makes_one_request_line(
    path: str, query: str, port: int, https: bool
) -> None:
    url = f"{'https' if https else 'http'}://hooks.example.com:{port}/{path}"
    if query:
        url += f"?{query}"
    if targets.url_problem(url, False) is not None:
        return
    where = target(url, FIXED)
    read = _parsed(request_head(where.head_start, {}, 0))
    assert read.url.startswith(b"/") and read.url.isascii()
    assert not re.search(rb"[\x00-\x20\x7f]", read.url)
    default = 443 if https else 80
    host = "hooks.example.com" if port == default else f"hooks.example.com:{port}"
    assert read.fields[0] == (b"Host", host.encode())
    assert (where.host, where.port, where.https) == ("hooks.example.com", port, https)


def test_hosts_are_shown_as_the_host_header_expects() -> None:
    assert target("http://[::1]:8080/x").head_start.endswith(b"Host: [::1]:8080\r\n")
    assert target("https://b\u00fccher.example/").head_start.endswith(
        b"Host: xn--bcher-kva.example\r\n"
    )
    assert target("https://b\u00fccher.example/").host == "xn--bcher-kva.example"
    assert target("http://example.com/caf\u00e9?q=\u00e9").head_start.startswith(
        b"POST /caf%C3%A9?q=%C3%A9 HTTP/1.1\r\n"
    )
    assert target("http://example.com").head_start.startswith(b"POST / HTTP/1.1\r\n")
