"""Secrets from files or the environment, never inline; secret files private to their owner;
TLS on every link unless a development flag says otherwise."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import ConfigError, parse
from core.webhooks.sealing import new_kek_line, parse_keyring
from tests.support.config import XPUB


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def raw(tmp_path: Path, **tables: dict[str, object]) -> dict[str, object]:
    kek = secret_file(tmp_path / "kek", new_kek_line("k1") + "\n")
    base: dict[str, object] = {
        "server": {"dev_plaintext": True},
        "adapters": {"dev_plaintext": True},
        "secrets": {"webhook_kek_file": str(kek)},
        "database": {"dsn": "postgresql://kassa@db.internal:5432/kassa"},
        "hd": {"account_xpub": XPUB},
        "chains": [{"id": "eip155:1", "adapter": "10.0.0.7:50071"}],
        "assets": [{"id": "eip155:1/slip44:60", "symbol": "ETH", "decimals": 18}],
    }
    return {**base, **tables}


def test_the_database_password_comes_from_a_private_file(tmp_path: Path) -> None:
    secret_file(tmp_path / "db-password", "p@ss:w/rd\n")
    config = parse(
        raw(
            tmp_path,
            database={
                "dsn": "postgresql://kassa@db.internal:5432/kassa",
                "password_file": "db-password",
            },
        ),
        tmp_path,
    )
    assert config.dsn == "postgresql://kassa:p%40ss%3Aw%2Frd@db.internal:5432/kassa"
    assert "p%40ss" not in repr(config) and "p@ss" not in repr(config)


def test_the_whole_dsn_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KASSA_DSN", "postgresql://kassa:secret@db/kassa")
    config = parse(raw(tmp_path, database={"dsn_env": "KASSA_DSN"}), tmp_path)
    assert config.dsn == "postgresql://kassa:secret@db/kassa"


@pytest.mark.parametrize(
    "dsn", ["postgresql://kassa:hunter2@db/kassa", "postgresql://kassa@db/kassa?password=hunter2"]
)
def test_a_password_inline_in_the_config_is_refused_without_repeating_it(
    tmp_path: Path, dsn: str
) -> None:
    with pytest.raises(ConfigError, match="password inline") as raised:
        parse(raw(tmp_path, database={"dsn": dsn}), tmp_path)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_secret_file_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    secret_file(tmp_path / "db-password", "hunter2\n", mode)
    with pytest.raises(ConfigError, match="readable by group or others") as raised:
        parse(
            raw(
                tmp_path,
                database={"dsn": "postgresql://k@db/kassa", "password_file": "db-password"},
            ),
            tmp_path,
        )
    assert "chmod 600" in str(raised.value) and "hunter2" not in str(raised.value)


def test_an_unset_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KASSA_NOT_SET_ANYWHERE is not set"):
        parse(
            raw(
                tmp_path,
                database={
                    "dsn": "postgresql://k@db/kassa",
                    "password_env": "KASSA_NOT_SET_ANYWHERE",
                },
            ),
            tmp_path,
        )


def test_the_api_and_the_adapter_links_are_tls_unless_a_dev_flag_says_so(tmp_path: Path) -> None:
    config = raw(tmp_path)
    config["server"] = {}
    with pytest.raises(ConfigError, match=r"server\.cert_file and server\.key_file are required"):
        parse(config, tmp_path)
    config = raw(tmp_path)
    config["adapters"] = {}
    with pytest.raises(ConfigError, match="adapter links are mutual TLS"):
        parse(config, tmp_path)


def test_a_tls_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    (tmp_path / "api.pem").write_text("cert")
    secret_file(tmp_path / "api.key", "key", 0o644)
    config = raw(tmp_path, server={"cert_file": "api.pem", "key_file": "api.key"})
    with pytest.raises(ConfigError, match=r"server\.key_file: .*readable by group or others"):
        parse(config, tmp_path)


def test_webhook_secrets_need_a_kek_and_rotation_keeps_the_old_one_second(tmp_path: Path) -> None:
    config = raw(tmp_path)
    config["secrets"] = {}
    with pytest.raises(ConfigError, match=r"secrets\.webhook_kek_file or secrets\.webhook_kek_env"):
        parse(config, tmp_path)
    rotated = secret_file(tmp_path / "kek2", new_kek_line("k2") + "\n" + new_kek_line("k1") + "\n")
    keys = parse(raw(tmp_path, secrets={"webhook_kek_file": str(rotated)}), tmp_path).webhook_keys
    assert keys is not None and keys.ids == ("k2", "k1") and keys.current_id == "k2"
    assert parse_keyring(rotated.read_text()).ids == keys.ids


def test_each_chain_has_an_adapter_identity(tmp_path: Path) -> None:
    chains = [
        {"id": "eip155:1", "adapter": "10.0.0.7:50071"},
        {
            "id": "eip155:137",
            "adapter": "10.0.0.8:50071",
            "adapter_name": "polygon.adapters.example",
        },
    ]
    config = parse(raw(tmp_path, chains=chains, assets=[]), tmp_path)
    assert [c.adapter_name for c in config.chains] == [
        "eip155-1.adapter.kassa",
        "polygon.adapters.example",
    ]
    with pytest.raises(ConfigError, match="adapter_name must be a DNS name"):
        parse(
            raw(tmp_path, chains=[{**chains[0], "adapter_name": "Not A Name"}], assets=[]), tmp_path
        )


def test_the_signer_link_is_mutual_tls_and_the_caller_key_a_private_file(tmp_path: Path) -> None:
    key = secret_file(tmp_path / "core-ed25519.key", "11" * 32 + "\n")
    signer = {"target": "signer.internal:50061", "caller_key_file": "core-ed25519.key"}
    with pytest.raises(ConfigError, match="the signer link is mutual TLS"):
        parse(raw(tmp_path, signer=signer), tmp_path)
    config = parse(raw(tmp_path, signer={**signer, "dev_plaintext": True}), tmp_path)
    assert config.payouts is not None and config.payouts.signer.ca_file is None
    key.chmod(0o644)
    with pytest.raises(
        ConfigError, match=r"signer\.caller_key_file: .*readable by group or others"
    ):
        parse(raw(tmp_path, signer={**signer, "dev_plaintext": True}), tmp_path)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    password=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1
    ),
    user=st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True),
)
def test_any_password_from_a_file_reaches_the_dsn_intact(
    tmp_path: Path, password: str, user: str
) -> None:
    secret_file(tmp_path / "pw", password + "\n")
    config = parse(
        raw(
            tmp_path, database={"dsn": f"postgresql://{user}@db:5432/kassa", "password_file": "pw"}
        ),
        tmp_path,
    )
    parts = urlsplit(config.dsn)
    assert unquote(parts.password or "") == password
    assert unquote(parts.username or "") == user
    assert (parts.hostname, parts.port, parts.path) == ("db", 5432, "/kassa")


def test_an_unreadable_signer_ca_or_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    secret_file(tmp_path / "core-ed25519.key", "11" * 32 + "\n")
    key = secret_file(tmp_path / "core.key", "not read here\n")
    (tmp_path / "ca.pem").write_text("a CA\n")
    (tmp_path / "core.pem").write_text("a certificate\n")
    signer = {
        "target": "signer.internal:50061",
        "caller_key_file": "core-ed25519.key",
        "ca_file": "ca.pem",
        "cert_file": "core.pem",
        "key_file": key.name,
    }
    assert parse(raw(tmp_path, signer=signer), tmp_path).payouts is not None
    for missing in ("ca_file", "cert_file"):
        with pytest.raises(ConfigError, match=rf"signer\.{missing}: cannot read .*absent\.pem"):
            parse(raw(tmp_path, signer={**signer, missing: "absent.pem"}), tmp_path)


def test_a_caller_key_that_is_not_ed25519_is_a_configuration_error(tmp_path: Path) -> None:
    secret_file(tmp_path / "core-ed25519.key", "not a key\n")
    signer = {
        "target": "signer.internal:50061",
        "caller_key_file": "core-ed25519.key",
        "dev_plaintext": True,
    }
    with pytest.raises(ConfigError, match=r"signer\.caller_key_file: .* is not an Ed25519 key"):
        parse(raw(tmp_path, signer=signer), tmp_path)
