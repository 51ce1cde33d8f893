"""Configuration parsing: defaults and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.evm.config import ConfigError, load, parse
from adapters.evm.traces import TraceMethod


def test_defaults_fill_everything_but_chain_id_and_urls() -> None:
    config = parse(
        {
            "server": {"dev_plaintext": True},
            "chain": {
                "chain_id": 1,
                "node_urls": ["ws://n:8546"],
                "tokens": ["0xABCDEF0000000000000000000000000000000001"],
            },
        }
    )
    assert config.listen == "127.0.0.1:50071"
    assert config.heartbeat_interval_s == 5
    assert config.poll_interval_s == 1
    assert config.reorg_window_blocks == 256
    assert config.tokens == ("0xabcdef0000000000000000000000000000000001",)
    assert config.internal_transfers is TraceMethod.OFF  # tracing costs the node: opt in


@pytest.mark.parametrize("method", list(TraceMethod))
def test_internal_transfers_names_a_trace_method(method: TraceMethod) -> None:
    config = parse(
        {
            "server": {"dev_plaintext": True},
            "chain": {"chain_id": 1, "node_urls": ["ws://n"], "internal_transfers": method.value},
        }
    )
    assert config.internal_transfers is method


@pytest.mark.parametrize(
    ("chain", "needle"),
    [
        ({"node_urls": ["ws://n"]}, "chain_id"),
        ({"chain_id": "1", "node_urls": ["ws://n"]}, "chain_id"),
        ({"chain_id": 1}, "node_urls"),
        (
            {"chain_id": 1, "node_urls": ["ws://n"], "internal_transfers": "on"},
            "internal_transfers",
        ),
        (
            {"chain_id": 1, "node_urls": ["ws://n"], "internal_transfers": True},
            "internal_transfers",
        ),
        ({"chain_id": 1, "node_urls": ["http://n"]}, "ws://"),
        ({"chain_id": 1, "node_urls": ["ws://n"], "tokens": ["0x12"]}, "tokens"),
        (
            {"chain_id": 1, "node_urls": ["ws://n"], "heartbeat_interval_s": 0},
            "heartbeat_interval_s",
        ),
        ({"chain_id": 1, "node_urls": ["ws://n"], "reorg_window_blocks": 0}, "reorg_window_blocks"),
        ({"chain_id": 1, "node_urls": ["ws://n"], "tokenz": []}, "tokenz"),
    ],
)
def test_bad_values_are_refused_naming_the_key(chain: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse({"chain": chain})


def test_unreadable_and_invalid_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[chain\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)


def test_a_token_address_with_a_trailing_newline_is_refused() -> None:
    # `$` would match before the newline; the check is a full match.
    with pytest.raises(ConfigError, match="tokens"):
        parse(
            {
                "chain": {
                    "chain_id": 1,
                    "node_urls": ["ws://n"],
                    "tokens": ["0xabcdef0000000000000000000000000000000001\n"],
                }
            }
        )
