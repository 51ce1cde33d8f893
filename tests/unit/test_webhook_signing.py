"""Kassa-Signature: building and verifying, examples and properties."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from core.webhooks import signing

SECRET = "whsec_test"
BODY = b'{"id":"e1","type":"invoice.paid"}'


def test_header_is_timestamp_then_one_v1_per_secret() -> None:
    value = signing.header([SECRET, "whsec_old"], 1700000000, BODY)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    old = hmac.new(b"whsec_old", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert value == f"t=1700000000,v1={expected},v1={old}"


def test_verify_accepts_either_secret_during_an_overlap() -> None:
    value = signing.header([SECRET, "whsec_old"], 1000, BODY)
    assert signing.verify(value, SECRET, BODY, now_s=1000)
    assert signing.verify(value, "whsec_old", BODY, now_s=1000)
    assert not signing.verify(value, "whsec_other", BODY, now_s=1000)


def test_verify_refuses_a_changed_body_old_timestamp_or_garbage() -> None:
    value = signing.header([SECRET], 1000, BODY)
    assert not signing.verify(value, SECRET, BODY + b" ", now_s=1000)
    assert not signing.verify(value, SECRET, BODY, now_s=1000 + 301)
    assert signing.verify(value, SECRET, BODY, now_s=1000 + 300)
    assert not signing.verify("", SECRET, BODY, now_s=1000)
    assert not signing.verify("v1=abc", SECRET, BODY, now_s=1000)
    assert not signing.verify("t=x,v1=abc", SECRET, BODY, now_s=1000)


def test_new_secrets_are_distinct_and_prefixed() -> None:
    a, b = signing.new_secret(), signing.new_secret()
    assert a != b and a.startswith("whsec_") and len(a) > 40


@given(
    secrets=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=3),
    timestamp_s=st.integers(min_value=0, max_value=2**40),
    body=st.binary(max_size=200),
)
def test_every_signing_secret_verifies_and_the_header_round_trips(
    secrets: list[str], timestamp_s: int, body: bytes
) -> None:
    value = signing.header(secrets, timestamp_s, body)
    parsed_t, found = signing.parse(value)
    assert parsed_t == timestamp_s and len(found) == len(secrets)
    for secret in secrets:
        assert signing.verify(value, secret, body, now_s=timestamp_s)


@given(body=st.binary(max_size=100), flip=st.integers(min_value=0, max_value=99))
def test_any_change_to_the_body_breaks_the_signature(body: bytes, flip: int) -> None:
    value = signing.header([SECRET], 5, body)
    tampered = bytearray(body + b"x")
    tampered[flip % len(tampered)] ^= 0x01
    assert not signing.verify(value, SECRET, bytes(tampered), now_s=5)
