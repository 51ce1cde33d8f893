"""Deposit addresses from the account xpub, without the signer (bip-utils).

Public derivation (CKDpub) of m/44'/60'/0'/0/i from the account-level xpub
the signer exported; the same child key gives the EVM address (EIP-55) and the
TRON address (base58check, 0x41). bip-utils does it all; one address costs ~0.2 ms, and
the core derives one per new invoice (never in bulk: the active-invoice index
is loaded from PostgreSQL), so a hand-written coincurve path that is ~2x
faster (measured next to it in tests/bench/bench_hd.py) is not worth owning.
"""

from __future__ import annotations

from bip_utils import (
    Base58ChecksumError,
    Bip32KeyError,
    Bip32Secp256k1,
    EthAddrEncoder,
    TrxAddrEncoder,
)

ACCOUNT_DEPTH = 3  # m/44'/60'/0'
EXTERNAL_CHAIN = 0
HARDENED = 0x80000000


class XpubError(ValueError):
    pass


def parse_account_xpub(account_xpub: str) -> Bip32Secp256k1:
    """A mainnet account-level (depth 3) xpub; XpubError naming why not.

    A private key (xprv) is refused: the core must never hold one.
    """
    try:
        account = Bip32Secp256k1.FromExtendedKey(account_xpub.strip())
    except Base58ChecksumError as exc:
        raise XpubError(f"bad checksum: {exc}") from None
    except (Bip32KeyError, ValueError) as exc:
        raise XpubError(f"not a BIP-32 mainnet xpub: {exc}") from None
    if not account.IsPublicOnly():
        raise XpubError("an xprv was given where the account xpub belongs: refusing a private key")
    if account.Depth().ToInt() != ACCOUNT_DEPTH:
        raise XpubError(
            f"expected an account-level xpub (depth {ACCOUNT_DEPTH}), "
            f"got depth {account.Depth().ToInt()}"
        )
    return account


class DepositAddresses:
    """Derives m/44'/60'/0'/0/i addresses from the account xpub (m/44'/60'/0')."""

    def __init__(self, account_xpub: str) -> None:
        self._external = parse_account_xpub(account_xpub).ChildKey(EXTERNAL_CHAIN)

    def _child(self, index: int) -> Bip32Secp256k1:
        if not 0 <= index < HARDENED:
            raise ValueError(f"deposit index {index} is not a non-hardened child index")
        return self._external.ChildKey(index)

    def checksum_address(self, index: int) -> str:
        """EIP-55 checksummed address of external child `index`."""
        return str(EthAddrEncoder.EncodeKey(self._child(index).PublicKey().KeyObject()))

    def tron_address(self, index: int) -> str:
        """The TRON address of the same child key: base58check of 0x41 || keccak(pubkey)[-20:].

        Same key, same index as the EVM address: the signer signs a TRON sweep with hd:<index>
        exactly as an EVM one (only the digest differs), so no second seed or account exists."""
        return str(TrxAddrEncoder.EncodeKey(self._child(index).PublicKey().KeyObject()))

    def address(self, index: int) -> str:
        """The address as the core stores and matches it: 0x + lowercase hex."""
        return self.checksum_address(index).lower()
