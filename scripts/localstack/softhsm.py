"""A SoftHSM2 token in a private directory, selected through SOFTHSM2_CONF."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localstack.paths import SOFTHSM2_MODULE


@dataclass
class SoftHsmToken:
    base_dir: Path
    label: str = "kassa"
    user_pin: str = "1234"
    so_pin: str = "123456"

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).resolve()
        self.conf_path = self.base_dir / "softhsm2.conf"
        self.tokens_dir = self.base_dir / "tokens"
        self.pin_file = self.base_dir / "user.pin"

    @property
    def module(self) -> Path:
        return SOFTHSM2_MODULE

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf_path)}

    def init(self) -> SoftHsmToken:
        self.tokens_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            f"directories.tokendir = {self.tokens_dir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        self.pin_file.write_text(self.user_pin + "\n")
        os.chmod(self.pin_file, 0o600)
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                self.label,
                "--so-pin",
                self.so_pin,
                "--pin",
                self.user_pin,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, **self.env},
        )
        return self
