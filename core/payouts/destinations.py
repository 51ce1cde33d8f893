"""Where a payout or refund may send funds: decided without I/O.

The attacker is a merchant's API client (or whoever holds its key): it can
name any destination. Refused, unless the operator allows the address
explicitly ([payouts] allowed_destinations):
- anything that is not exactly 0x + 40 hex digits (fullmatch: `0x…\\n` is
  not an address), the zero address, and a mixed-case address whose EIP-55
  checksum is wrong (a typo the checksum exists to catch);
- a configured token contract: tokens sent to a token contract are lost;
- Kassa's own addresses (its hot keys, treasuries, the deposit addresses it
  derived): funds would go round in circles outside the ledger's view of
  them — a deposit address would credit an invoice with the merchant's own
  money.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from Crypto.Hash import keccak

from core import reasons
from core.domain.assets import Asset
from core.payouts.config import PayoutsConfig

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
REASON = reasons.DESTINATION_REFUSED


def syntax(address: str) -> str | None:
    """Why `address` is not a usable EVM address; None when it is."""
    if not _ADDRESS.fullmatch(address):
        return "a 0x-prefixed 20-byte hex address"
    if int(address, 16) == 0:
        return "the zero address burns funds"
    digits = address[2:]
    # Mixed case is an EIP-55 checksum: it must be the right one.
    mixed = digits not in (digits.lower(), digits.upper())
    if mixed and checksummed(address) != address:
        return "mixed-case address with a wrong EIP-55 checksum"
    return None


def checksummed(address: str) -> str:
    """EIP-55: hex letters upper-cased where the keccak of the lowercase hex has
    a nibble >= 8. (web3's to_checksum_address once web3 is a core dependency;
    the core has pycryptodome's keccak today, as core/chain/hd.py uses.)"""
    digits = address[2:].lower()
    digest = keccak.new(data=digits.encode(), digest_bits=256).hexdigest()
    return "0x" + "".join(
        c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, digest, strict=False)
    )


@dataclass(frozen=True)
class Policy:
    """Addresses (lowercase) refused as destinations, with why, and the
    operator's explicit exceptions."""

    refused: dict[str, str]
    allowed: frozenset[str] = frozenset()

    def refusal(self, address: str, own: bool) -> str | None:
        """Why funds may not go to `address` (lowercase, syntax checked);
        `own`: the core derived or signs for it (looked up in its database)."""
        assert address == address.lower() and syntax(address) is None
        if address in self.allowed:
            return None
        if address in self.refused:
            return self.refused[address]
        if own:
            return "one of Kassa's own addresses (a hot key or a deposit address)"
        return None


def policy(
    token_contracts: Iterable[str], treasuries: Iterable[str], allowed: Iterable[str]
) -> Policy:
    refused = {t.lower(): "a token contract: tokens sent to it are lost" for t in token_contracts}
    refused |= {t.lower(): "one of Kassa's own addresses (a treasury)" for t in treasuries}
    return Policy(refused, frozenset(a.lower() for a in allowed))


def policy_of(payouts: PayoutsConfig, assets: Iterable[Asset]) -> Policy:
    """The policy of a core's configuration: its assets' token contracts and
    its treasuries refused, its allowed_destinations allowed."""
    sweeps = payouts.sweeps
    return policy(
        [a.contract for a in assets if a.contract],
        sweeps.treasury.values() if sweeps is not None else (),
        payouts.allowed_destinations,
    )
