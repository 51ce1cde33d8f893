"""Destinations of payouts and refunds (core/payouts/destinations.py), as a
merchant's API client would try them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.payouts import destinations

# EIP-55's own test vectors.
CHECKSUMMED = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        *[(a, None) for a in CHECKSUMMED],
        (CHECKSUMMED[0].lower(), None),  # all lowercase: no checksum claimed
        ("0x" + CHECKSUMMED[0][2:].upper(), None),  # all uppercase: likewise
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "EIP-55"),  # one letter's case wrong
        (CHECKSUMMED[0] + "\n", "20-byte hex"),  # `$` would have let this through
        (" " + CHECKSUMMED[0], "20-byte hex"),
        (CHECKSUMMED[0][:-1], "20-byte hex"),
        ("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "20-byte hex"),
        ("0x" + "g" * 40, "20-byte hex"),
        ("0x" + "0" * 40, "zero address"),
        ("", "20-byte hex"),
    ],
)
def test_syntax(address: str, expected: str | None) -> None:
    why = destinations.syntax(address)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


@given(st.binary(min_size=20, max_size=20).filter(any))
def test_checksummed_addresses_pass_and_their_case_flips_do_not(raw: bytes) -> None:
    good = destinations.checksummed("0x" + raw.hex())
    assert destinations.syntax(good) is None
    for i in [i for i, c in enumerate(good) if i > 1 and c.isalpha()]:
        flipped = good[:i] + good[i].swapcase() + good[i + 1 :]
        digits = flipped[2:]
        if digits not in (digits.lower(), digits.upper()):  # still claims a checksum
            assert destinations.syntax(flipped) is not None


TOKEN = "0x" + "11" * 20
TREASURY = "0x" + "22" * 20
CUSTOMER = "0x" + "33" * 20
DEPOSIT = "0x" + "44" * 20


@pytest.mark.parametrize(
    ("address", "own", "allowed", "expected"),
    [
        (CUSTOMER, False, (), None),
        (TOKEN, False, (), "token contract"),
        (TREASURY, False, (), "treasury"),
        (DEPOSIT, True, (), "own addresses"),  # a deposit address or hot key, from the database
        (TOKEN, False, (TOKEN,), None),  # the operator allowed it explicitly
        (DEPOSIT, True, (DEPOSIT.upper().replace("0X", "0x"),), None),
    ],
)
def test_policy(address: str, own: bool, allowed: tuple[str, ...], expected: str | None) -> None:
    policy = destinations.policy([TOKEN.upper().replace("0X", "0x")], [TREASURY], allowed)
    why = policy.refusal(address, own)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why
