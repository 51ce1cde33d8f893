"""The example production configs in deploy/config are accepted by the processes'
own schemas and parsers, so they cannot rot as keys change."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from adapters.evm import config as evm_config
from adapters.evm.config_schema import EvmToml
from adapters.evm.config_schema import check as check_evm
from core.config_schema import CoreToml, check
from localstack.paths import REPO
from signer import config as signer_config

DEPLOY = REPO / "deploy" / "config"


def test_core_example_fits_the_schema() -> None:
    check(tomllib.loads((DEPLOY / "core.toml").read_text()), CoreToml, "core.toml")


def test_evm_example_parses() -> None:
    raw = tomllib.loads((DEPLOY / "evm.toml").read_text())
    check_evm(raw, EvmToml, "evm.toml")
    config = evm_config.parse(raw)
    assert config.metrics_listen and len(config.node_urls) == 2


def test_signer_example_parses_but_for_the_placeholder_key(tmp_path: Path) -> None:
    raw = tomllib.loads((DEPLOY / "signer.toml").read_text())
    with pytest.raises(signer_config.ConfigError, match="ed25519_public_key"):
        signer_config.parse(raw, tmp_path)
    raw["callers"][0]["ed25519_public_key"] = "11" * 32
    config = signer_config.parse(raw, tmp_path)
    assert config.metrics_listen == "10.0.2.10:9466" and config.tls is not None
