"""From a decrypted seed to the deposit account and its children, wiping the seed after."""

from __future__ import annotations

from signer.hd.bip32 import ACCOUNT_PATH, ExtendedKey, child_private, derive_path, master_key


def wipe(secret: bytearray) -> None:
    for i in range(len(secret)):
        secret[i] = 0


def account_key(seed: bytearray) -> ExtendedKey:
    """Consumes the seed: it is zeroed even if derivation fails."""
    try:
        return derive_path(master_key(seed), ACCOUNT_PATH)
    finally:
        wipe(seed)


def deposit_child(account: ExtendedKey, index: int) -> ExtendedKey:
    """m/44'/60'/0'/0/index: the external chain the core derives deposit addresses from."""
    return child_private(child_private(account, 0), index)
