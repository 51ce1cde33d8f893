"""Webhook secrets sealed at rest: AES-GCM under a KEK, bound to the endpoint, rotatable."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.webhooks import signing
from core.webhooks.sealing import (
    KeyringError,
    SealError,
    kek_of,
    new_kek_line,
    parse_keyring,
    seal,
    unseal,
)

OLD = parse_keyring(new_kek_line("old"))
endpoint_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=16)
# At least 16 characters: a shorter plaintext could appear in random bytes by chance.
secrets = st.text(min_size=16, max_size=80).map(lambda t: signing.SECRET_PREFIX + t)


@given(endpoint=endpoint_ids, secret=secrets)
def test_a_sealed_secret_opens_to_itself_and_never_shows_its_plaintext(
    endpoint: str, secret: str
) -> None:
    sealed = seal(OLD, endpoint, secret)
    assert unseal(OLD, endpoint, sealed) == secret
    assert secret.encode() not in sealed
    assert kek_of(sealed) == "old"
    # A fresh nonce each time: the same secret never seals to the same bytes.
    assert seal(OLD, endpoint, secret) != sealed


@given(endpoint=endpoint_ids, other=endpoint_ids, secret=secrets)
def test_a_sealed_secret_does_not_open_on_another_endpoint(
    endpoint: str, other: str, secret: str
) -> None:
    if endpoint == other:
        return
    with pytest.raises(SealError, match="copied from another endpoint") as raised:
        unseal(OLD, other, seal(OLD, endpoint, secret))
    assert secret not in str(raised.value)


@given(endpoint=endpoint_ids, secret=secrets, flip=st.integers(min_value=0, max_value=10_000))
def test_any_altered_byte_after_the_header_is_refused(
    endpoint: str, secret: str, flip: int
) -> None:
    sealed = bytearray(seal(OLD, endpoint, secret))
    header = 3 + len("old")
    position = header + flip % (len(sealed) - header)
    sealed[position] ^= 0x01
    with pytest.raises(SealError):
        unseal(OLD, endpoint, bytes(sealed))


def test_rotation_new_kek_first_opens_old_seals_and_seals_new_ones_under_the_new_kek() -> None:
    old_line, new_line = new_kek_line("old"), new_kek_line("new")
    old = parse_keyring(old_line)
    rotated = parse_keyring(new_line + "\n" + old_line)
    assert rotated.current_id == "new" and rotated.ids == ("new", "old")
    secret = signing.new_secret()
    sealed_old = seal(old, "ep1", secret)
    assert unseal(rotated, "ep1", sealed_old) == secret
    resealed = seal(rotated, "ep1", secret)
    assert kek_of(resealed) == "new"
    # Once the old KEK is dropped, only what was re-sealed still opens.
    new_only = parse_keyring(new_line)
    assert unseal(new_only, "ep1", resealed) == secret
    with pytest.raises(SealError, match="KEK 'old', which the keyring does not hold") as raised:
        unseal(new_only, "ep1", sealed_old)
    assert secret not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no KEK"),
        ("# only a comment\n", "no KEK"),
        ("k1", "expected id:base64-key"),
        ("bad id:" + base64.b64encode(b"k" * 32).decode(), "expected id:base64-key"),
        ("k1:not base64!", "not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "32 bytes"),
        (
            "k1:"
            + base64.b64encode(b"k" * 32).decode()
            + "\nk1:"
            + base64.b64encode(b"j" * 32).decode(),
            "twice",
        ),
    ],
)
def test_bad_keyrings_are_refused_without_repeating_a_key(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message) as raised:
        parse_keyring(text)
    assert base64.b64encode(b"k" * 32).decode() not in str(raised.value)


def test_the_keyring_never_prints_its_keys() -> None:
    line = new_kek_line("k1")
    keyring = parse_keyring(line)
    assert line.split(":")[1] not in repr(keyring)
    assert "k1" in repr(keyring)
