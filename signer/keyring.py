"""The signer's keys: the key ceremony, hot keys and the HD account, as the token holds them.

Functions taking a TokenSession must run on the HsmThread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from signer.hd import account as hd_account
from signer.hd.bip32 import ACCOUNT_PATH, ExtendedKey
from signer.hsm.token import KEK_LABEL, HotKey, HsmError, TokenSession
from signer.state import seed_file
from signer.state.seed_file import SEED_BYTES, SeedFile

HD_KEY_ID = "hd"
FIRST_HOT_KEY = "hot-1"


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    label: str
    kind: str  # "hot" or "hd"
    public_key: bytes = b""
    address: str = ""
    xpub: str = ""
    derivation_path: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CeremonyResult:
    xpub: str
    seed_created: bool
    kek_created: bool
    hot_key_created: HotKey | None


def init_ceremony(session: TokenSession, seed_path: Path) -> CeremonyResult:
    """Idempotent: an existing seed is decrypted and its xpub returned, never replaced."""
    _, kek_created = session.ensure_kek()
    existing = seed_file.read(seed_path)
    if existing is None:
        seed = session.random_bytes(SEED_BYTES)
        try:
            iv, ciphertext = session.encrypt_seed(seed, seed_file.aad_for(KEK_LABEL))
            seed_file.write_new(seed_path, SeedFile(KEK_LABEL, iv, ciphertext))
            xpub = hd_account.account_key(seed).neuter().serialize()
        finally:
            hd_account.wipe(seed)
    else:
        xpub = account_xpub_from(session, existing)
    hot_created = None
    if not session.hot_keys():
        hot_created = session.create_hot_key(FIRST_HOT_KEY)
    return CeremonyResult(xpub, existing is None, kek_created, hot_created)


def account_private(session: TokenSession, seed_path: Path) -> ExtendedKey:
    """The account's private extended key; callers keep it only as long as a signature takes."""
    stored = seed_file.read(seed_path)
    if stored is None:
        raise HsmError(f"no HD seed at {seed_path}: run `kassa-signer keys init` first")
    return _account_from(session, stored)


def _account_from(session: TokenSession, stored: SeedFile) -> ExtendedKey:
    seed = session.decrypt_seed(stored.iv, stored.ciphertext, stored.aad)
    return hd_account.account_key(seed)


def account_xpub_from(session: TokenSession, stored: SeedFile) -> str:
    return _account_from(session, stored).neuter().serialize()


def account_xpub(session: TokenSession, seed_path: Path) -> str | None:
    stored = seed_file.read(seed_path)
    return None if stored is None else account_xpub_from(session, stored)


def deposit_child(session: TokenSession, seed_path: Path, index: int) -> ExtendedKey:
    return hd_account.deposit_child(account_private(session, seed_path), index)


def hot_key_info(key: HotKey) -> KeyInfo:
    return KeyInfo(
        key_id=key.label,
        label=key.label,
        kind="hot",
        public_key=key.public_key,
        address=key.address,
        attributes=key.attributes,
    )


def hd_key_info(session: TokenSession, xpub: str) -> KeyInfo:
    attributes = {f"kek.{k}": v for k, v in session.kek_attributes().items()}
    attributes["kek_label"] = KEK_LABEL
    return KeyInfo(
        key_id=HD_KEY_ID,
        label="hd-account",
        kind="hd",
        xpub=xpub,
        derivation_path=ACCOUNT_PATH,
        attributes=attributes,
    )


def list_keys(session: TokenSession, xpub: str | None) -> list[KeyInfo]:
    keys = [hot_key_info(k) for k in session.hot_keys()]
    if xpub is not None:
        keys.append(hd_key_info(session, xpub))
    return keys


def get_key(session: TokenSession, key_id: str, xpub: str | None) -> KeyInfo | None:
    if key_id == HD_KEY_ID:
        return None if xpub is None else hd_key_info(session, xpub)
    hot = session.hot_key(key_id)
    return None if hot is None else hot_key_info(hot)
