"""`kassa-signer hsm check` and start-up refusals against real PKCS#11 modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localstack.procs import console_script
from localstack.softhsm import SoftHsmToken

OPENCRYPTOKI = "/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0"
SIGNER = console_script("kassa-signer")


def write_config(path: Path, token: SoftHsmToken, **hsm: str) -> Path:
    settings = {
        "module": str(token.module),
        "token_label": token.label,
        "pin_file": str(token.pin_file),
        **hsm,
    }
    lines = [
        "[hsm]",
        *(f'{k} = "{v}"' for k, v in settings.items()),
        "[state]",
        f'dir = "{path.parent / "state"}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(
    config: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNER, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_softhsm_passes(softhsm: SoftHsmToken, tmp_path: Path) -> None:
    result = run(write_config(tmp_path / "c.toml", softhsm), "hsm", "check", env=softhsm.env)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA", "CKM_AES_KEY_GEN", "CKM_AES_GCM"):
        assert f"[ok     ] {name}" in result.stdout
    assert "secp256k1:   ok" in result.stdout
    assert result.stdout.rstrip().endswith("OK: this HSM can run the Kassa signer")


def test_wrong_token_label_is_named(softhsm: SoftHsmToken, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", softhsm, token_label="treasury")
    result = run(config, "hsm", "check", env=softhsm.env)
    assert result.returncode == 3
    assert "no token labelled 'treasury'" in result.stdout
    assert "'kassa'" in result.stdout  # says which labels do exist


def test_wrong_pin_is_named(softhsm: SoftHsmToken, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", softhsm, pin_env="TEST_WRONG_PIN")
    config.write_text(config.read_text().replace(f'pin_file = "{softhsm.pin_file}"\n', ""))
    result = run(config, "hsm", "check", env={**softhsm.env, "TEST_WRONG_PIN": "0000"})
    assert result.returncode == 3
    assert "PIN was rejected" in result.stdout


def test_missing_module_is_named(softhsm: SoftHsmToken, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", softhsm, module="/nonexistent/libpkcs11.so")
    result = run(config, "hsm", "check", env=softhsm.env)
    assert result.returncode == 3
    assert "cannot load PKCS#11 module /nonexistent/libpkcs11.so" in result.stdout


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[hsm]\npin = "1234"\n')
    result = run(config, "hsm", "check")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "hsm.pin is not accepted" in result.stderr


def test_server_refuses_to_start_with_wrong_pin(softhsm: SoftHsmToken, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", softhsm, pin_env="TEST_WRONG_PIN")
    config.write_text(config.read_text().replace(f'pin_file = "{softhsm.pin_file}"\n', ""))
    result = run(config, "serve", env={**softhsm.env, "TEST_WRONG_PIN": "0000"})
    assert result.returncode == 3
    assert "CKR_PIN_INCORRECT" in result.stderr


def test_server_refuses_to_start_without_token(softhsm: SoftHsmToken, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", softhsm, token_label="absent")
    result = run(config, "serve", env=softhsm.env)
    assert result.returncode == 3
    assert "no token labelled 'absent'" in result.stderr


@pytest.mark.skipif(not Path(OPENCRYPTOKI).exists(), reason="opencryptoki is not installed")
def test_opencryptoki_without_its_daemon_fails_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[hsm]\nmodule = "{OPENCRYPTOKI}"\npin_env = "TEST_PIN"\n')
    result = run(config, "hsm", "check", env={"TEST_PIN": "12345678"})
    if "FAILED: no token labelled" in result.stdout:
        pytest.skip("a pkcsslotd is running on this host; the namespaced test covers it")
    assert result.returncode == 3
    assert "C_Initialize failed" in result.stdout
    assert "pkcsslotd" in result.stdout
    assert "Traceback" not in result.stderr


# opencryptoki hard-codes /etc/opencryptoki, /var/lib/opencryptoki and /run paths, so a
# private instance needs its own mount namespace with those paths over tmpfs.
_PRIVATE_OPENCRYPTOKI = r"""
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/lock/opencryptoki/swtok
mount -t tmpfs tmpfs /var/lib/opencryptoki
mkdir -p /var/lib/opencryptoki/swtok/TOK_OBJ
chgrp -R pkcs11 /run/lock/opencryptoki /var/lib/opencryptoki
chmod -R 770 /run/lock/opencryptoki /var/lib/opencryptoki
mount --bind "$OCK_ETC" /etc/opencryptoki
pkcsslotd
set +e
"$SIGNER" --config "$CONFIG" hsm check
rc=$?
kill "$(cat /run/pkcsslotd.pid)" 2>/dev/null
exit $rc
"""


def _private_namespaces_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a private opencryptoki needs root to mount over its hard-coded paths"
    if not shutil.which("pkcsslotd") or not shutil.which("unshare"):
        return "pkcsslotd or unshare is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a mount namespace: {probe.stderr.decode().strip()}"
    try:
        import grp

        grp.getgrnam("pkcs11")
    except KeyError:
        return "the pkcs11 group opencryptoki requires does not exist"
    return None


@pytest.mark.skipif(not Path(OPENCRYPTOKI).exists(), reason="opencryptoki is not installed")
def test_opencryptoki_is_refused_naming_ec_mechanisms(tmp_path: Path) -> None:
    reason = _private_namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "opencryptoki.conf").write_text(
        "version opencryptoki-3.1\nslot 3\n{\nstdll = libpkcs11_sw.so\n}\n"
    )
    config = tmp_path / "c.toml"
    # The software token's factory label; its mechanisms are listed without a login.
    config.write_text(
        f'[hsm]\nmodule = "{OPENCRYPTOKI}"\ntoken_label = "IBM OS PKCS#11"\npin_env = "TEST_PIN"\n'
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE_OPENCRYPTOKI],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "OCK_ETC": str(etc),
            "CONFIG": str(config),
            "SIGNER": SIGNER,
            "TEST_PIN": "87654321",
            "PATH": os.environ["PATH"] + ":" + str(Path(sys.executable).parent),
        },
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "token:       'IBM OS PKCS#11'" in result.stdout
    assert "[MISSING] CKM_EC_KEY_PAIR_GEN" in result.stdout
    assert "[MISSING] CKM_ECDSA" in result.stdout
    assert "FAILED: missing required mechanisms: CKM_EC_KEY_PAIR_GEN, CKM_ECDSA" in result.stdout
