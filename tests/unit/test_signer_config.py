"""Configuration parsing: defaults, PIN sources and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.config import DEFAULT_MODULE, ConfigError, parse


def test_defaults_need_no_file() -> None:
    config = parse({}, Path("/srv/kassa"))
    assert config.server.listen == "127.0.0.1:50061"
    assert config.hsm.module == DEFAULT_MODULE
    assert config.hsm.token_label == "kassa"
    assert config.state_dir == Path("/srv/kassa/signer-state")


def test_relative_paths_are_relative_to_the_config_file() -> None:
    config = parse({"hsm": {"pin_file": "pin"}, "state": {"dir": "/abs"}}, Path("/etc/kassa"))
    assert config.hsm.pin_file == Path("/etc/kassa/pin")
    assert config.state_dir == Path("/abs")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"hsm": {"pin": "1234"}}, "hsm.pin is not accepted"),
        ({"hsm": {"pin_file": "a", "pin_env": "B"}}, "only one of"),
        ({"server": {"listen": "nope"}}, "host:port"),
        ({"server": {"listen": "x:70000"}}, "host:port"),
        ({"hsm": {"modul": "x"}}, "unknown key 'hsm.modul'"),
        ({"signer": {}}, "unknown key 'signer'"),
        ({"hsm": {"token_label": 1}}, "hsm.token_label: expected str, got int"),
        ({"requests": {"max_skew_s": True}}, "requests.max_skew_s: expected int, got bool"),
        ({"server": {"grace_s": "5"}}, "server.grace_s: expected float, got str"),
        ({"callers": {"key_id": "core"}}, "callers: expected array, got object"),
        ({"hsm": {"token_label": ""}}, "token_label"),
        ({"callers": [{"key_id": "core", "ed25519_public_key": "ab", "role": "p"}]}, "64 hex"),
        ({"callers": [{"key_id": "core", "ed25519_public_key": "ab" * 32}]}, "role"),
        ({"approvers": [{"key_id": "a", "ed25519_public_key": "ab" * 32, "x": "y"}]}, "approvers"),
        ({"server": {"insecure_loopback_only": "yes"}}, "insecure_loopback_only"),
        ({"requests": {"max_lifetime_s": 3600}}, "max_lifetime_s"),
        ({"tls": {"ca_file": "ca.pem"}}, "tls.cert_file"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"server": {"workers": 0}}, "server.workers"),
        ({"server": {"workers": 65}}, "server.workers"),
        ({"server": {"workers": True}}, "server.workers"),
        ({"server": {"workers": "2"}}, "server.workers"),
    ],
)
def test_bad_config_is_refused_with_a_reason(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw, Path("/"))


def test_pin_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse({"hsm": {"pin_env": "TEST_SIGNER_PIN"}}, Path("/"))
    monkeypatch.setenv("TEST_SIGNER_PIN", "4321")
    assert config.hsm.read_pin() == "4321"
    monkeypatch.delenv("TEST_SIGNER_PIN")
    with pytest.raises(ConfigError, match="TEST_SIGNER_PIN is not set"):
        config.hsm.read_pin()


def test_pin_from_file(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("987654\n")
    (tmp_path / "pin").chmod(0o600)
    assert parse({"hsm": {"pin_file": "pin"}}, tmp_path).hsm.read_pin() == "987654"
    with pytest.raises(ConfigError, match="pin_file"):
        parse({"hsm": {"pin_file": "absent"}}, tmp_path).hsm.read_pin()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_pin_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    (tmp_path / "pin").write_text("987654\n")
    (tmp_path / "pin").chmod(mode)
    with pytest.raises(ConfigError, match="readable by group or others"):
        parse({"hsm": {"pin_file": "pin"}}, tmp_path).hsm.read_pin()
    (tmp_path / "pin").chmod(0o400)
    assert parse({"hsm": {"pin_file": "pin"}}, tmp_path).hsm.read_pin() == "987654"


def _serveable(raw: dict[str, object]) -> None:
    parse(raw, Path("/")).check_serveable()


def test_serve_needs_a_policy_and_tls_or_explicit_loopback_plaintext() -> None:
    caller = {"key_id": "core", "ed25519_public_key": "ab" * 32, "role": "payments"}
    tls = {"ca_file": "ca", "cert_file": "c", "key_file": "k"}
    with pytest.raises(ConfigError, match=r"policy\.file"):
        _serveable({})
    with pytest.raises(ConfigError, match=r"\[tls\] is required"):
        _serveable({"policy": {"file": "p"}})
    with pytest.raises(ConfigError, match=r"\[tls\] is required"):
        _serveable(
            {
                "policy": {"file": "p"},
                "server": {"listen": "0.0.0.0:1", "insecure_loopback_only": True},
            }
        )
    _serveable({"policy": {"file": "p"}, "server": {"insecure_loopback_only": True}})
    with pytest.raises(ConfigError, match="tls_subject is required"):
        _serveable({"policy": {"file": "p"}, "tls": tls, "callers": [caller]})
    _serveable(
        {
            "policy": {"file": "p"},
            "tls": tls,
            "callers": [{**caller, "tls_subject": "CN=kassa-core"}],
        }
    )


def test_workers_default_to_one_process() -> None:
    assert parse({}, Path("/")).server.workers == 1
    assert parse({"server": {"workers": 4}}, Path("/")).server.workers == 4


def test_each_worker_serves_metrics_on_its_own_port() -> None:
    from signer.api.server import worker_metrics_listen

    assert worker_metrics_listen(None, 3) is None
    assert worker_metrics_listen("127.0.0.1:9466", None) == "127.0.0.1:9466"  # alone
    assert worker_metrics_listen("127.0.0.1:9466", 0) == "127.0.0.1:9466"
    assert worker_metrics_listen("[::1]:9466", 2) == "[::1]:9468"
