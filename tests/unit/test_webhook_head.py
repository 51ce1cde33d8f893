"""A delivery's request head (request_head of worker.headers(), as
DeliveryWorker.send makes it): the signature is over the body, and receivers
read these fields; a value with a control character is refused (no header
injection). Each secret's HMAC is keyed once and copied per body
(signing._keyed): every body signed as a fresh hmac.new would."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.webhooks import signing, worker
from core.webhooks.delivery_http import request_head, target

URLS = ("http://127.0.0.1:8080/hook", "https://example.com/a/b?c=d", "http://h/")


def _claimed(
    event_id: str, event_type: str, secrets: list[str], body: bytes, delivery_id: uuid.UUID
) -> worker.Claimed:
    return worker.Claimed(
        delivery_id=delivery_id,
        attempt=1,
        give_up_time=datetime(2030, 1, 1, tzinfo=UTC),
        url=URLS[0],
        signing_secrets=secrets,
        event_id=event_id,
        event_type=event_type,
        body=body,
        endpoint_id="ep",
    )


def _head(url: str, claimed: worker.Claimed, now: datetime) -> bytes:
    where = target(url, worker.FIXED_HEADERS)
    return request_head(where.head_start, worker.headers(claimed, now), len(claimed.body))


@pytest.mark.parametrize("bad", ["\r\nX-Injected: 1", "a\nb", "nul\x00", "del\x7f"])
def test_a_control_character_in_the_event_id_or_type_is_refused(bad: str) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    for claimed in (
        _claimed(bad, "invoice.created", ["s"], b"{}", uuid.uuid4()),
        _claimed("e1", bad, ["s"], b"{}", uuid.uuid4()),
    ):
        with pytest.raises(ValueError, match="control character"):
            _head(URLS[0], claimed, now)


def test_the_signature_in_the_head_verifies_against_the_body() -> None:
    body = b'{"id":"e1","type":"invoice.paid"}'
    claimed = _claimed("e1", "invoice.paid", ["whsec_new", "whsec_old"], body, uuid.uuid4())
    now = datetime(2026, 12, 1, 12, 0, 5, 999_999, tzinfo=UTC)
    head = _head(URLS[0], claimed, now)
    fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
    value = fields["Kassa-Signature"]
    assert value.startswith(f"t={int(now.timestamp())},")
    for secret in ("whsec_new", "whsec_old"):
        assert signing.verify(value, secret, body, now_s=now.timestamp())
    assert fields["Content-Length"] == str(len(body))
    assert fields["Kassa-Delivery-Id"] == str(claimed.delivery_id)


@given(
    secrets=st.lists(st.sampled_from(["whsec_a", "whsec_b", "whsec_c"]), min_size=1, max_size=2),
    signed=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2**40), st.binary(max_size=300)),
        min_size=1,
        max_size=5,
    ),
)
def test_a_secret_keyed_once_signs_every_body_as_a_fresh_hmac(
    secrets: list[str], signed: list[tuple[int, bytes]]
) -> None:
    """signing.header keeps each secret's keyed HMAC and copies it per body: the
    same secrets, over and over, sign each body as hmac.new would."""
    for timestamp_s, body in signed * 2:
        fresh = [
            hmac.new(s.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()
            for s in secrets
        ]
        expected = ",".join([f"t={timestamp_s}"] + [f"v1={mac}" for mac in fresh])
        assert signing.header(secrets, timestamp_s, body) == expected
