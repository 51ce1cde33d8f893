"""Low-S normalisation and recovery ids, against coincurve signatures."""

from __future__ import annotations

import pytest
from coincurve import PrivateKey, PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.secp256k1 import (
    CURVE_ORDER,
    HALF_ORDER,
    SignatureError,
    address_of,
    normalise_low_s,
    recoverable,
)

secrets = st.integers(min_value=1, max_value=CURVE_ORDER - 1).map(lambda k: k.to_bytes(32, "big"))
digests = st.binary(min_size=32, max_size=32)


def _high_s_variant(rs: bytes) -> bytes:
    s = int.from_bytes(rs[32:], "big")
    return rs[:32] + (CURVE_ORDER - s).to_bytes(32, "big")


@settings(max_examples=80, deadline=None)
@given(secret=secrets, digest=digests, flip=st.booleans())
def test_recoverable_gives_low_s_that_recovers_the_key(
    secret: bytes, digest: bytes, flip: bool
) -> None:
    key = PrivateKey(secret)
    public = key.public_key.format(compressed=False)
    rs = key.sign_recoverable(digest, hasher=None)[:64]
    if flip:
        rs = _high_s_variant(rs)  # what an HSM hands back about half the time
    signature = recoverable(digest, rs, public)
    assert signature.s <= HALF_ORDER
    recovered = PublicKey.from_signature_and_message(
        signature.rs_bytes() + bytes([signature.recovery_id]), digest, hasher=None
    )
    assert recovered.format(compressed=False) == public


@given(r=st.integers(1, CURVE_ORDER - 1), s=st.integers(1, CURVE_ORDER - 1))
def test_normalise_low_s(r: int, s: int) -> None:
    r2, s2 = normalise_low_s(r, s)
    assert r2 == r
    assert s2 <= HALF_ORDER
    assert s2 in (s, CURVE_ORDER - s)


@pytest.mark.parametrize(("r", "s"), [(0, 1), (1, 0), (CURVE_ORDER, 1), (1, CURVE_ORDER)])
def test_out_of_range_is_refused(r: int, s: int) -> None:
    with pytest.raises(SignatureError):
        normalise_low_s(r, s)


def test_signature_by_another_key_is_refused() -> None:
    digest = bytes(32)
    rs = PrivateKey(b"\x01" * 32).sign_recoverable(digest, hasher=None)[:64]
    other = PrivateKey(b"\x02" * 32).public_key.format(compressed=False)
    with pytest.raises(SignatureError):
        recoverable(digest, rs, other)


def test_address_of_known_key() -> None:
    # Private key 1 is the generator point; its address is well known.
    public = PrivateKey((1).to_bytes(32, "big")).public_key.format(compressed=False)
    assert address_of(public) == "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
