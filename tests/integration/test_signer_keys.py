"""The key ceremony, key listing, HD derivation and hot-key signing on a real SoftHSM2 token."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from coincurve import PublicKey
from eth_account import Account
from pkcs11 import Attribute, KeyType, ObjectClass

from localstack.procs import console_script
from localstack.softhsm import SoftHsmToken
from signer import keyring
from signer.config import parse
from signer.hd.bip32 import child_public, parse_extended_key, uncompressed
from signer.hsm.signing import sign_digest
from signer.hsm.thread import HsmThread
from signer.hsm.token import KEK_LABEL, TokenSession
from signer.secp256k1 import CURVE_ORDER, HALF_ORDER, address_of, keccak256
from signer.state import seed_file

SIGNER = console_script("kassa-signer")


def cli(token: SoftHsmToken, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNER, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **token.env},
        timeout=60,
    )


@pytest.fixture
def config_path(softhsm: SoftHsmToken, tmp_path: Path) -> Path:
    path = tmp_path / "signer.toml"
    path.write_text(
        f'[hsm]\nmodule = "{softhsm.module}"\npin_file = "{softhsm.pin_file}"\n'
        '[state]\ndir = "state"\n'
    )
    return path


@pytest.fixture
def hsm(
    softhsm: SoftHsmToken, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HsmThread, TokenSession]]:
    """An in-process session on this test's token; the module is unloaded after so the
    next test's SOFTHSM2_CONF takes effect."""
    monkeypatch.setenv("SOFTHSM2_CONF", softhsm.env["SOFTHSM2_CONF"])
    config = parse({"hsm": {"pin_file": str(softhsm.pin_file)}}, config_path.parent)
    thread = HsmThread()
    session = thread.call(TokenSession.open, config.hsm, softhsm.user_pin)
    yield thread, session
    thread.call(session.close)
    thread.call(pkcs11.unload, str(softhsm.module))
    thread.close()


def _token_attributes(
    session: TokenSession, object_class: ObjectClass, key_type: KeyType, label: str
) -> dict[Attribute, Any]:
    key = session.session.get_key(object_class=object_class, key_type=key_type, label=label)
    wanted = [
        Attribute.TOKEN,
        Attribute.SENSITIVE,
        Attribute.EXTRACTABLE,
        Attribute.NEVER_EXTRACTABLE,
        Attribute.ALWAYS_SENSITIVE,
    ]
    if object_class is ObjectClass.SECRET_KEY:
        wanted += [Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP, Attribute.SIGN]
    else:
        wanted += [Attribute.SIGN, Attribute.DECRYPT, Attribute.DERIVE]
    return dict(key.get_attributes(wanted))


def test_ceremony_is_idempotent_and_writes_the_xpub(
    softhsm: SoftHsmToken, config_path: Path, tmp_path: Path
) -> None:
    first = cli(softhsm, config_path, "keys", "init", "--xpub-out", str(tmp_path / "x1"))
    assert first.returncode == 0, first.stderr
    xpub = first.stdout.strip()
    assert xpub.startswith("xpub")
    assert (tmp_path / "x1").read_text() == xpub + "\n"
    assert "hot key 'hot-1' generated" in first.stderr

    seed_path = tmp_path / "state" / "hd-seed.json"
    before = seed_path.read_bytes()
    assert seed_path.stat().st_mode & 0o777 == 0o600

    second = cli(softhsm, config_path, "keys", "init", "--xpub-out", str(tmp_path / "x2"))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == xpub
    assert (tmp_path / "x2").read_text() == xpub + "\n"
    assert seed_path.read_bytes() == before
    assert "already present" in second.stderr
    assert "generated" not in second.stderr

    account = parse_extended_key(xpub)
    assert (account.depth, account.child_number) == (3, 0x80000000)
    exported = cli(softhsm, config_path, "keys", "export-xpub")
    assert exported.stdout.strip() == xpub


def test_ceremony_keys_are_sensitive_and_never_extractable(
    softhsm: SoftHsmToken, config_path: Path, hsm: tuple[HsmThread, TokenSession]
) -> None:
    assert cli(softhsm, config_path, "keys", "init").returncode == 0
    thread, session = hsm
    kek = thread.call(_token_attributes, session, ObjectClass.SECRET_KEY, KeyType.AES, KEK_LABEL)
    assert kek == {
        Attribute.TOKEN: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.ALWAYS_SENSITIVE: True,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.WRAP: False,
        Attribute.SIGN: False,
    }
    hot = thread.call(_token_attributes, session, ObjectClass.PRIVATE_KEY, KeyType.EC, "hot-1")
    assert hot == {
        Attribute.TOKEN: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.ALWAYS_SENSITIVE: True,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.DERIVE: False,
    }
    # The token itself refuses to hand out the secret value.
    with pytest.raises(pkcs11.PKCS11Error):
        thread.call(
            lambda: session.session.get_key(object_class=ObjectClass.SECRET_KEY, label=KEK_LABEL)[
                Attribute.VALUE
            ]
        )


def test_seed_file_holds_no_plaintext_and_binds_its_aad(
    softhsm: SoftHsmToken,
    config_path: Path,
    tmp_path: Path,
    hsm: tuple[HsmThread, TokenSession],
) -> None:
    assert cli(softhsm, config_path, "keys", "init").returncode == 0
    thread, session = hsm
    seed_path = tmp_path / "state" / "hd-seed.json"
    stored = seed_file.read(seed_path)
    assert stored is not None
    seed = thread.call(session.decrypt_seed, stored.iv, stored.ciphertext, stored.aad)
    assert len(seed) == 64
    raw = seed_path.read_bytes()
    assert bytes(seed) not in raw
    assert seed.hex().encode() not in raw.lower()
    assert len(stored.iv) == 12
    with pytest.raises(Exception, match="does not decrypt"):
        thread.call(session.decrypt_seed, stored.iv, stored.ciphertext, b"another purpose")

    tampered = bytearray(stored.ciphertext)
    tampered[0] ^= 1
    seed_path.write_text(seed_file.SeedFile(stored.kek_label, stored.iv, bytes(tampered)).to_json())
    result = cli(softhsm, config_path, "keys", "export-xpub")
    assert result.returncode == 3
    assert "does not decrypt" in result.stderr


def test_child_from_seed_matches_public_derivation_from_xpub(
    softhsm: SoftHsmToken,
    config_path: Path,
    tmp_path: Path,
    hsm: tuple[HsmThread, TokenSession],
) -> None:
    init = cli(softhsm, config_path, "keys", "init", "--xpub-out", str(tmp_path / "xpub"))
    assert init.returncode == 0, init.stderr
    external = child_public(parse_extended_key((tmp_path / "xpub").read_text().strip()), 0)
    thread, session = hsm
    for index in (0, 1, 7, 1000):
        child = thread.call(
            keyring.deposit_child, session, tmp_path / "state" / "hd-seed.json", index
        )
        from_xpub = address_of(uncompressed(child_public(external, index).key))
        assert address_of(uncompressed(child.public_key())) == from_xpub
        # An independent implementation agrees on the address of the private key.
        assert Account.from_key(child.key).address.lower() == from_xpub


def test_hot_key_signatures_are_low_s_and_recover_its_address(
    hsm: tuple[HsmThread, TokenSession],
) -> None:
    thread, session = hsm
    key = thread.call(session.create_hot_key, "payouts-1")
    assert key.address == "0x" + keccak256(key.public_key[1:])[-20:].hex()
    raw_high_s = 0
    for i in range(200):
        digest = keccak256(i.to_bytes(4, "big"))
        rs, _ = thread.call(session.sign_raw, "payouts-1", digest)
        raw_high_s += int.from_bytes(rs[32:], "big") > HALF_ORDER
        signature = sign_digest(thread, session, "payouts-1", digest)
        assert 0 < signature.s <= HALF_ORDER < CURVE_ORDER
        recovered = PublicKey.from_signature_and_message(
            signature.rs_bytes() + bytes([signature.recovery_id]), digest, hasher=None
        )
        assert address_of(recovered.format(compressed=False)) == key.address
    assert raw_high_s > 0  # the token does hand out high-S, so normalising matters


def test_raw_signature_rate(hsm: tuple[HsmThread, TokenSession]) -> None:
    thread, session = hsm
    thread.call(session.create_hot_key, "bench")
    digest = bytes(range(32))

    def burst(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            session.sign_raw("bench", digest)
        return count / (time.perf_counter() - started)

    rate = thread.call(burst, 1000)
    print(f"\nraw secp256k1 signatures/s on the HSM thread: {rate:.0f}")
    assert rate > 200


def test_keys_list_and_create(softhsm: SoftHsmToken, config_path: Path) -> None:
    assert cli(softhsm, config_path, "keys", "init").returncode == 0
    created = cli(softhsm, config_path, "keys", "create", "--label", "refunds-1")
    assert created.returncode == 0, created.stderr
    label, address = created.stdout.strip().split("\t")
    assert label == "refunds-1" and address.startswith("0x") and len(address) == 42
    again = cli(softhsm, config_path, "keys", "create", "--label", "refunds-1")
    assert again.returncode == 3 and "already exists" in again.stderr

    listed = cli(softhsm, config_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line for line in listed.stdout.splitlines()}
    assert set(rows) == {"hot-1", "refunds-1", "hd"}
    assert address in rows["refunds-1"]
    for attribute in ("sensitive=true", "extractable=false", "never_extractable=true"):
        assert attribute in rows["hot-1"]
        assert "kek." + attribute in rows["hd"]
    assert "m/44'/60'/0'" in rows["hd"]
