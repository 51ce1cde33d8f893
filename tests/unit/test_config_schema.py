"""Strict configuration: typos and wrong types in core.toml and evm.toml are refused with
one line naming the file and the key; docs/configuration.md matches the schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.evm import config as evm_config
from core import config as core_config
from core.webhooks.sealing import new_kek_line
from localstack.config_docs import render
from localstack.paths import REPO

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
CORE = f"""
[server]
dev_plaintext = true
[adapters]
dev_plaintext = true
[secrets]
webhook_kek_file = "webhook-kek"
[database]
dsn = "postgresql://kassa@127.0.0.1/kassa"
[hd]
account_xpub = "{XPUB}"
[[chains]]
id = "eip155:1"
adapter = "127.0.0.1:50071"
confirmations = 12
[rates]
fixed = {{ "ETH/USD" = "3000" }}
"""
EVM = """
[server]
dev_plaintext = true
[chain]
chain_id = 1
node_urls = ["ws://127.0.0.1:8545"]
"""

SIGNER = """[signer]
target = "signer.internal:50061"
caller_key_file = "core-ed25519.key"
dev_plaintext = true
"""


def _core(tmp_path: Path, text: str) -> core_config.Config:
    kek = tmp_path / "webhook-kek"
    if not kek.exists():
        kek.write_text(new_kek_line("k-1") + "\n")
        kek.chmod(0o600)
    path = tmp_path / "core.toml"
    path.write_text(text)
    return core_config.load(path)


def _evm(tmp_path: Path, text: str) -> evm_config.Config:
    path = tmp_path / "evm.toml"
    path.write_text(text)
    return evm_config.load(path)


def test_the_base_files_load(tmp_path: Path) -> None:
    assert _core(tmp_path, CORE).chains[0].confirmations == 12
    assert _evm(tmp_path, EVM).chain_id == 1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (CORE.replace("confirmations = 12", "confirmation = 12"), "'chains[0].confirmation'"),
        (CORE + "[invoice]\ndefault_ttl_s = 60\n", "unknown key 'invoice'"),
        (
            CORE + "[invoices]\ndefault_ttl_s = true\n",
            "invoices.default_ttl_s: expected int, got bool",
        ),
        (
            CORE + '[invoices]\ndefault_ttl_s = "abc"\n',
            "invoices.default_ttl_s: expected int, got str",
        ),
        (CORE.replace("confirmations = 12", "confirmations = true"), "chains[0].confirmations"),
        (CORE + "[health]\ninvoices_need_chain = 1\n", "health.invoices_need_chain: expected bool"),
        (CORE + "[metrics]\nlisten = 9464\n", "metrics.listen"),
        (
            CORE.replace("dev_plaintext = true", "dev_plaintext = true\nport = 1", 1),
            "unknown key 'server.port'",
        ),
        (CORE + SIGNER + "startup_timeout = 5\n", "unknown key 'signer.startup_timeout'"),
        (
            CORE + SIGNER + 'startup_timeout_s = "soon"\n',
            "signer.startup_timeout_s: expected float, got str",
        ),
        (CORE + '[signer]\ncaller_key_file = "k"\n', "missing required key 'signer.target'"),
    ],
)
def test_core_refuses_naming_the_file_and_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(core_config.ConfigError) as refused:
        _core(tmp_path, text)
    message = str(refused.value)
    assert named in message, message
    assert str(tmp_path / "core.toml") in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (EVM.replace("chain_id", "chainid"), "unknown key 'chain.chainid'"),
        (EVM + "[node]\nurl = 1\n", "unknown key 'node'"),
        (EVM.replace("chain_id = 1", "chain_id = true"), "chain.chain_id: expected int, got bool"),
        (EVM.replace("chain_id = 1", 'chain_id = "abc"'), "chain.chain_id: expected int, got str"),
    ],
)
def test_evm_refuses_naming_the_file_and_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(evm_config.ConfigError) as refused:
        _evm(tmp_path, text)
    assert named in str(refused.value) and str(tmp_path / "evm.toml") in str(refused.value)


@given(st.from_regex(r"[a-z_]{1,20}", fullmatch=True))
def test_any_unknown_invoices_key_is_refused(key: str) -> None:
    known = {
        "default_ttl_s",
        "max_ttl_s",
        "max_price",
        "underpayment_tolerance_bps",
        "late_payment_window_s",
        "expiry_interval_s",
    }
    raw = {
        "database": {"dsn": "x"},
        "chains": [{"id": "eip155:1", "adapter": "a"}],
        "invoices": {key: 1},
    }
    if key in known:
        return
    with pytest.raises(core_config.ConfigError, match=f"unknown key 'invoices.{key}'"):
        core_config.parse(raw, Path("."))


def test_the_configuration_reference_matches_the_schemas() -> None:
    written = (REPO / "docs" / "configuration.md").read_text()
    assert written == render(), "docs/configuration.md is stale: run scripts/gen-config-docs"
    for key in ("`confirmations`", "`invoices_need_chain`", "`node_urls`", "`[[chains.tiers]]`"):
        assert key in written


@pytest.mark.parametrize("level", ["debug", "warning"])
def test_the_log_level_is_configurable_in_core_and_adapter(level: str, tmp_path: Path) -> None:
    table = f'[log]\nlevel = "{level}"\n'
    assert _core(tmp_path, CORE + table).log_level == level
    assert _evm(tmp_path, EVM + table).log_level == level
    assert _core(tmp_path, CORE).log_level == "info"


def test_an_unknown_log_level_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(core_config.ConfigError, match=r"log\.level: invalid enum value 'loud'"):
        _core(tmp_path, CORE + '[log]\nlevel = "loud"\n')


def test_the_signer_link_settings_load_with_bounded_defaults(tmp_path: Path) -> None:
    key = tmp_path / "core-ed25519.key"
    key.write_text("11" * 32)
    key.chmod(0o600)
    loaded = _core(tmp_path, CORE + SIGNER)
    assert loaded.payouts is not None
    assert loaded.payouts.signer.startup_timeout_s == 60.0
    assert loaded.payouts.signer.health_interval_s == 10.0
    tuned = _core(tmp_path, CORE + SIGNER + "startup_timeout_s = 0\nhealth_interval_s = 2.5\n")
    assert tuned.payouts is not None
    assert (tuned.payouts.signer.startup_timeout_s, tuned.payouts.signer.health_interval_s) == (
        0.0,
        2.5,
    )
    for bad in ("startup_timeout_s = -1\n", "health_interval_s = 0\n"):
        with pytest.raises(core_config.ConfigError, match=r"signer\.startup_timeout_s must be"):
            _core(tmp_path, CORE + SIGNER + bad)
