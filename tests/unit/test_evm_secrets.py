"""The adapter's secrets: node URLs (provider API keys) from a private file or the
environment, never repeated in errors or logs; TLS unless a development flag says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.evm.config import ConfigError, parse
from adapters.evm.logs import redact_url

KEY = "9f2c1e0d5b7a4c3e8f6d2b1a0c9e8d7f"
TLS = {"server": {"dev_plaintext": True}}


def private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_node_urls_from_a_private_file(tmp_path: Path) -> None:
    private(tmp_path / "nodes", f"wss://mainnet.example/v3/{KEY}\n\nws://10.0.0.5:8546\n")
    config = parse({**TLS, "chain": {"chain_id": 1, "node_urls_file": "nodes"}}, tmp_path)
    assert config.node_urls == (f"wss://mainnet.example/v3/{KEY}", "ws://10.0.0.5:8546")


def test_node_urls_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASSA_EVM_NODES", f"wss://a.example/{KEY} wss://b.example/{KEY}")
    config = parse({**TLS, "chain": {"chain_id": 1, "node_urls_env": "KASSA_EVM_NODES"}}, tmp_path)
    assert len(config.node_urls) == 2
    with pytest.raises(ConfigError, match="KASSA_EVM_NODES_UNSET is not set"):
        parse({**TLS, "chain": {"chain_id": 1, "node_urls_env": "KASSA_EVM_NODES_UNSET"}}, tmp_path)


def test_a_readable_node_urls_file_is_refused_and_its_content_never_repeated(
    tmp_path: Path,
) -> None:
    private(tmp_path / "nodes", f"https://mainnet.example/v3/{KEY}\n", 0o644)
    with pytest.raises(ConfigError, match="readable by group or others") as raised:
        parse({**TLS, "chain": {"chain_id": 1, "node_urls_file": "nodes"}}, tmp_path)
    assert KEY not in str(raised.value)
    (tmp_path / "nodes").chmod(0o600)
    with pytest.raises(ConfigError, match="ws:// or wss://") as raised:
        parse({**TLS, "chain": {"chain_id": 1, "node_urls_file": "nodes"}}, tmp_path)
    assert KEY not in str(raised.value)
    with pytest.raises(ConfigError, match="give one of them"):
        parse(
            {**TLS, "chain": {"chain_id": 1, "node_urls": ["ws://n"], "node_urls_file": "nodes"}},
            tmp_path,
        )


def test_the_adapter_serves_over_mutual_tls_unless_a_dev_flag_says_so(tmp_path: Path) -> None:
    chain = {"chain_id": 1, "node_urls": ["ws://n:8546"]}
    with pytest.raises(ConfigError, match="mutual TLS"):
        parse({"chain": chain}, tmp_path)
    config = parse(
        {
            "server": {"cert_file": "a.pem", "key_file": "a.key", "client_ca_file": "ca.pem"},
            "chain": chain,
        },
        tmp_path,
    )
    assert config.tls is not None and config.tls.allowed_callers == ("CN=kassa-core",)
    assert config.tls.key_file == tmp_path / "a.key"
    with pytest.raises(ConfigError, match="allowed_callers"):
        parse(
            {
                "server": {
                    "cert_file": "a.pem",
                    "key_file": "a.key",
                    "client_ca_file": "ca.pem",
                    "allowed_callers": [],
                },
                "chain": chain,
            },
            tmp_path,
        )


@given(
    scheme=st.sampled_from(["ws", "wss"]),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}", fullmatch=True),
    port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    secret=st.from_regex(r"[A-Za-z0-9]{24,40}", fullmatch=True),
    where=st.sampled_from(["path", "query", "user"]),
)
def test_logged_node_urls_keep_the_host_and_drop_any_key(
    scheme: str, host: str, port: int | None, secret: str, where: str
) -> None:
    netloc = host + (f":{port}" if port else "")
    url = {
        "path": f"{scheme}://{netloc}/v3/{secret}",
        "query": f"{scheme}://{netloc}/?apikey={secret}",
        "user": f"{scheme}://user:{secret}@{netloc}/",
    }[where]
    shown = redact_url(url)
    assert shown == f"{scheme}://{netloc}"
    assert secret not in str(shown)
