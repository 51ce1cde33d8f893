"""The envelope digest: domain separation and Ed25519 verification."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from signer.envelope.digest import SIGN_REQUEST_DOMAIN, body_digest, signature_valid

CALLER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CALLER_PUBLIC = CALLER.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_domain_constant_is_the_one_in_the_proto() -> None:
    assert SIGN_REQUEST_DOMAIN == b"kassa.signer.v1.SignRequestBody\x00"


def test_digest_of_known_body() -> None:
    expected = hashlib.sha256(b"kassa.signer.v1.SignRequestBody\x00abc").hexdigest()
    assert body_digest(b"abc").hex() == expected
    assert body_digest(b"abc") != hashlib.sha256(b"abc").digest()


@given(body=st.binary(max_size=512))
def test_signature_over_digest_verifies(body: bytes) -> None:
    assert signature_valid(CALLER_PUBLIC, body, CALLER.sign(body_digest(body)))


@given(body=st.binary(min_size=1, max_size=512))
def test_signature_over_raw_body_does_not_verify(body: bytes) -> None:
    # A signature made without the domain prefix must not be accepted.
    assert not signature_valid(CALLER_PUBLIC, body, CALLER.sign(body))


@given(body=st.binary(max_size=256), other=st.binary(max_size=256))
def test_signature_is_bound_to_body(body: bytes, other: bytes) -> None:
    signature = CALLER.sign(body_digest(body))
    assert signature_valid(CALLER_PUBLIC, other, signature) == (body == other)


@given(key=st.binary(max_size=40), signature=st.binary(max_size=70))
def test_malformed_keys_and_signatures_are_invalid_not_errors(key: bytes, signature: bytes) -> None:
    assert not signature_valid(key, b"body", signature)


# -- properties of the envelope signature and the validity window

from signer.envelope.validity import check_window, hd_index  # noqa: E402

_PROPERTY_KEY = Ed25519PrivateKey.generate()
_PROPERTY_PUBLIC = _PROPERTY_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@given(st.binary(min_size=1, max_size=200), st.data())
def test_any_byte_change_in_the_body_invalidates_the_signature(
    body: bytes, data: st.DataObject
) -> None:
    signature = _PROPERTY_KEY.sign(body_digest(body))
    assert signature_valid(_PROPERTY_PUBLIC, body, signature)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    assert not signature_valid(_PROPERTY_PUBLIC, changed, signature)
    assert not signature_valid(_PROPERTY_PUBLIC, body + b"\x00", signature)
    assert not signature_valid(_PROPERTY_PUBLIC, body[:-1], signature)


@given(st.integers(0, 10**9), st.integers(-200, 200), st.integers(-200, 200))
def test_window_accepts_exactly_the_bounded_fresh_requests(
    issue: int, lifetime: int, offset: int
) -> None:
    """Whole seconds, so the property is exact: lifetime in (0, 60], now within skew 30."""
    expire, now = issue + lifetime, issue + offset
    refused = check_window(issue, expire, now, 60, 30)
    fine = 0 < lifetime <= 60 and issue <= now + 30 and now <= expire + 30
    assert (refused is None) == fine


def test_hd_key_ids() -> None:
    assert hd_index("hd:0") == 0 and hd_index("hd:2147483647") == 2**31 - 1
    for bad in ("hd:", "hd:01", "hd:-1", "hd:2147483648", "hd:1'", "hot-1", "hd"):
        assert hd_index(bad) is None


def _body() -> bytes:
    from kassa.signer.v1 import signer_pb2

    b = signer_pb2.SignRequestBody(
        request_id="r", key_id="hot-1", chain="eip155:1", unsigned_transaction=b"\x02"
    )
    b.intent.amount = "1"
    b.issue_time.seconds = 1
    b.expire_time.seconds = 2
    return b.SerializeToString()


@given(st.binary(max_size=40))
def test_a_body_is_accepted_only_in_its_one_canonical_encoding(suffix: bytes) -> None:
    """Whatever is appended (unknown fields, a repeated field, garbage) either fails to
    parse, or parses to a body that does not re-serialise to the bytes: BODY_INVALID."""
    from signer.api.errors import Refusal
    from signer.envelope.validity import parse_body

    assert not isinstance(parse_body(_body()), Refusal)
    if suffix:
        refused = parse_body(_body() + suffix)
        assert isinstance(refused, Refusal) and refused.reason in {"BODY_INVALID", "FIELD_TOO_LONG"}


def test_timestamps_out_of_range_are_body_invalid() -> None:
    from kassa.signer.v1 import signer_pb2
    from signer.api.errors import Refusal
    from signer.envelope.validity import parse_body

    for seconds, nanos in ((10**13, 0), (-(10**12), 0), (1, 10**9), (1, -1)):
        b = signer_pb2.SignRequestBody.FromString(_body())
        b.expire_time.seconds, b.expire_time.nanos = seconds, nanos
        refused = parse_body(b.SerializeToString())
        assert isinstance(refused, Refusal) and refused.metadata["problem"] == "bad_timestamp"
