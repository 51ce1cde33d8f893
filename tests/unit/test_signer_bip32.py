"""BIP-32 derivation against the official test vector 1, plus properties."""

from __future__ import annotations

import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.hd.base58 import b58check_decode, b58check_encode
from signer.hd.bip32 import (
    HARDENED,
    DerivationError,
    child_private,
    child_public,
    derive_path,
    master_key,
    parse_extended_key,
    parse_path,
)

VECTOR_1_SEED = bytes.fromhex("000102030405060708090a0b0c0d0e0f")

# (path, xpub, xprv) from BIP-32 "Test vector 1".
VECTOR_1 = [
    (
        "m",
        "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
    ),
    (
        "m/0'",
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
    ),
    (
        "m/0'/1",
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
        "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
    ),
    (
        "m/0'/1/2'",
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
    ),
    (
        "m/0'/1/2'/2",
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
    ),
    (
        "m/0'/1/2'/2/1000000000",
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
        "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
    ),
]


@pytest.mark.parametrize(("path", "xpub", "xprv"), VECTOR_1)
def test_vector_1_private_derivation(path: str, xpub: str, xprv: str) -> None:
    key = derive_path(master_key(VECTOR_1_SEED), path)
    assert key.serialize() == xprv
    assert key.neuter().serialize() == xpub


def test_vector_1_public_derivation_of_unhardened_tail() -> None:
    parent = parse_extended_key(VECTOR_1[4][1])  # m/0'/1/2'/2, public only
    assert child_public(parent, 1_000_000_000).serialize() == VECTOR_1[5][1]


@pytest.mark.parametrize(("path", "xpub", "xprv"), VECTOR_1)
def test_parse_round_trips(path: str, xpub: str, xprv: str) -> None:
    assert parse_extended_key(xpub).serialize() == xpub
    assert parse_extended_key(xprv).serialize() == xprv


def test_hardened_child_of_public_key_is_refused() -> None:
    public = parse_extended_key(VECTOR_1[0][1])
    with pytest.raises(DerivationError):
        child_public(public, HARDENED)


def test_bad_checksum_is_refused() -> None:
    xpub = VECTOR_1[0][1]
    tampered = xpub[:-1] + ("9" if xpub[-1] != "9" else "8")
    with pytest.raises(ValueError, match="checksum"):
        parse_extended_key(tampered)


@pytest.mark.parametrize("path", ["", "44'/60'", "m/x", "m/2147483648", "m/1''"])
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(DerivationError):
        parse_path(path)


def test_path_parsing() -> None:
    assert parse_path("m/44'/60'/0'/0/7") == [44 + HARDENED, 60 + HARDENED, HARDENED, 0, 7]


seeds = st.binary(min_size=16, max_size=64)
indexes = st.integers(min_value=0, max_value=HARDENED - 1)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, index=indexes)
def test_public_derivation_equals_public_key_of_private_derivation(seed: bytes, index: int) -> None:
    parent = master_key(seed)
    private_child = child_private(parent, index)
    public_child = child_public(parent.neuter(), index)
    assert public_child.key == PrivateKey(private_child.key).public_key.format(compressed=True)
    assert public_child.chain_code == private_child.chain_code
    assert public_child.serialize() == private_child.neuter().serialize()


@settings(max_examples=30, deadline=None)
@given(seed=seeds, index=st.integers(min_value=HARDENED, max_value=2**32 - 1))
def test_hardened_children_differ_from_unhardened(seed: bytes, index: int) -> None:
    parent = master_key(seed)
    assert child_private(parent, index).key != child_private(parent, index - HARDENED).key


@given(payload=st.binary(max_size=100))
def test_base58check_round_trip(payload: bytes) -> None:
    assert b58check_decode(b58check_encode(payload)) == payload
