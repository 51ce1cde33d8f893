"""BIP-32 public derivation against the BIP-32 test vector 1."""

from __future__ import annotations

import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from core.chain.hd import DepositAddresses, ExtendedPublicKey, XpubError, evm_address

# BIP-32 test vector 1, chain m/0H/1/2H (depth 3) and its children.
M_0H_1_2H = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
M_0H_1_2H_2 = "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV"
M_0H_1_2H_2_1G = "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy"


def test_public_derivation_matches_the_vector() -> None:
    parent = ExtendedPublicKey.parse(M_0H_1_2H)
    child = parent.child(2)
    assert child == ExtendedPublicKey.parse(M_0H_1_2H_2)
    assert child.child(1_000_000_000) == ExtendedPublicKey.parse(M_0H_1_2H_2_1G)


def test_deposit_addresses_are_the_external_chain_children() -> None:
    addresses = DepositAddresses(M_0H_1_2H)
    expected = evm_address(ExtendedPublicKey.parse(M_0H_1_2H).child(0).child(7).public_key)
    assert addresses.address(7) == expected
    assert addresses.address(7) != addresses.address(8)


def test_corrupted_xpub_is_refused() -> None:
    broken = M_0H_1_2H[:-1] + ("6" if M_0H_1_2H[-1] != "6" else "7")
    with pytest.raises(XpubError):
        ExtendedPublicKey.parse(broken)


def test_non_account_depth_is_refused() -> None:
    with pytest.raises(XpubError):
        DepositAddresses(M_0H_1_2H_2)


def test_evm_address_of_a_known_key() -> None:
    # anvil's account 0.
    key = PrivateKey(
        bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    )
    assert evm_address(key.public_key.format()) == "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_children_are_distinct_from_their_parent(index: int) -> None:
    parent = ExtendedPublicKey.parse(M_0H_1_2H)
    child = parent.child(index)
    assert child.public_key != parent.public_key and child.depth == parent.depth + 1
