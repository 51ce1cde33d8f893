"""The encrypted HD seed file: only ciphertext and what is needed to decrypt it in the token."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

FORMAT = "kassa.signer.hd-seed/1"
SEED_BYTES = 64


class SeedFileError(Exception):
    pass


@dataclass(frozen=True)
class SeedFile:
    kek_label: str
    iv: bytes
    ciphertext: bytes

    @property
    def aad(self) -> bytes:
        """Binds purpose, format and KEK so a ciphertext cannot be replayed as another secret."""
        return f"{FORMAT}\x00purpose=bip32-seed\x00kek={self.kek_label}".encode()

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "format": FORMAT,
                    "kek_label": self.kek_label,
                    "mechanism": "CKM_AES_GCM",
                    "iv": self.iv.hex(),
                    "ciphertext": self.ciphertext.hex(),
                },
                indent=2,
            )
            + "\n"
        )


def aad_for(kek_label: str) -> bytes:
    return SeedFile(kek_label, b"", b"").aad


def read(path: Path) -> SeedFile | None:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SeedFileError(f"cannot read seed file {path}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise SeedFileError(f"seed file {path} is not in format {FORMAT}")
    try:
        return SeedFile(
            str(raw["kek_label"]), bytes.fromhex(raw["iv"]), bytes.fromhex(raw["ciphertext"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SeedFileError(f"seed file {path} is malformed: {exc}") from None


def write_new(path: Path, seed_file: SeedFile) -> None:
    """Never replaces an existing seed: losing it loses every deposit address's funds."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(seed_file.to_json())
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if path exists, unlike rename
    finally:
        tmp.unlink()
