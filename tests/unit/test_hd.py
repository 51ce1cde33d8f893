"""Deposit-address derivation (bip-utils) against the BIP-32 test vector 1,
anvil's well-known accounts, and an independent coincurve CKDpub on
thousands of indices."""

from __future__ import annotations

import pytest
from bip_utils import Bip32Secp256k1, Bip39SeedGenerator
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from core.chain.hd import DepositAddresses, XpubError, parse_account_xpub
from signer.hd.account import account_key, deposit_child
from tests.support.hd import (
    M_0H_1_2H,
    b58decode_check,
    ckd_pub,
    evm_address,
    reference_addresses,
)

# BIP-32 test vector 1, chain m/0H/1/2H (depth 3) and its children.
M_0H_1_2H_2 = "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV"
M_0H_1_2H_2_1G = "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy"
M_0H_1_2H_XPRV = "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM"
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_ACCOUNTS = [
    "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
    "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
    "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
]


# -- tests --------------------------------------------------------------------


def test_public_derivation_matches_the_vector() -> None:
    parent = Bip32Secp256k1.FromExtendedKey(M_0H_1_2H)
    child = parent.ChildKey(2)
    assert child.PublicKey().ToExtended() == M_0H_1_2H_2
    assert child.ChildKey(1_000_000_000).PublicKey().ToExtended() == M_0H_1_2H_2_1G


def test_deposit_addresses_agree_with_an_independent_ckdpub_on_thousands_of_indices() -> None:
    addresses = DepositAddresses(M_0H_1_2H)
    expected = reference_addresses(M_0H_1_2H, 3000)
    assert [addresses.address(i) for i in range(3000)] == expected
    assert len(set(expected)) == 3000


def test_the_signers_private_keys_own_the_cores_deposit_addresses() -> None:
    """anvil's accounts are m/44'/60'/0'/0/i of its mnemonic: the signer's
    private derivation and the core's public one must both land on them."""
    account = account_key(bytearray(Bip39SeedGenerator(ANVIL_MNEMONIC).Generate()))
    addresses = DepositAddresses(account.neuter().serialize())
    for index, known in enumerate(ANVIL_ACCOUNTS):
        secret = deposit_child(account, index).key
        assert evm_address(PrivateKey(secret).public_key.format()) == known
        assert addresses.address(index) == known


def test_addresses_are_lowercase_and_checksummed_on_request() -> None:
    account = account_key(bytearray(Bip39SeedGenerator(ANVIL_MNEMONIC).Generate()))
    addresses = DepositAddresses(account.neuter().serialize())
    assert addresses.checksum_address(0) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert addresses.address(0) == ANVIL_ACCOUNTS[0]


def test_corrupted_xpub_is_refused() -> None:
    broken = M_0H_1_2H[:-1] + ("6" if M_0H_1_2H[-1] != "6" else "7")
    with pytest.raises(XpubError):
        DepositAddresses(broken)


def test_non_account_depth_is_refused() -> None:
    with pytest.raises(XpubError):
        DepositAddresses(M_0H_1_2H_2)


def test_a_private_key_is_refused() -> None:
    with pytest.raises(XpubError, match="private"):
        parse_account_xpub(M_0H_1_2H_XPRV)


@pytest.mark.parametrize("index", [-1, 2**31, 2**32])
def test_hardened_or_out_of_range_indices_are_refused(index: int) -> None:
    with pytest.raises(ValueError):
        DepositAddresses(M_0H_1_2H).address(index)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_children_are_distinct_from_their_parent(index: int) -> None:
    parent = Bip32Secp256k1.FromExtendedKey(M_0H_1_2H)
    child = parent.ChildKey(index)
    assert (
        child.PublicKey().RawCompressed().ToBytes() != parent.PublicKey().RawCompressed().ToBytes()
    )
    assert child.Depth().ToInt() == parent.Depth().ToInt() + 1


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_any_index_agrees_with_the_reference(index: int) -> None:
    payload = b58decode_check(M_0H_1_2H)
    external = ckd_pub(payload[45:78], payload[13:45], 0)
    assert DepositAddresses(M_0H_1_2H).address(index) == evm_address(ckd_pub(*external, index)[0])
