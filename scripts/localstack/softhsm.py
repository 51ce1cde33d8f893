"""A SoftHSM2 token in a private directory, selected through SOFTHSM2_CONF."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
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
        _init_token(
            ["softhsm2-util", "--init-token", "--free", "--label", self.label],
            {**os.environ, **self.env},
            [self.so_pin, self.so_pin, self.user_pin, self.user_pin],
        )
        return self


def _init_token(argv: list[str], env: dict[str, str], answers: list[str]) -> None:
    """Runs softhsm2-util on a pseudo-terminal and answers its PIN prompts there: a PIN on
    the command line would show in `ps` (softhsm2-util reads PINs only from argv or a tty)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    pending, output = [a.encode() + b"\n" for a in answers], b""
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"softhsm2-util did not finish: {output.decode(errors='replace')}"
                )
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            output += chunk
            if pending and output.rstrip().endswith(b":"):
                os.write(master, pending.pop(0))
                output += b"\n"
        if process.wait() != 0 or pending:
            raise RuntimeError(f"softhsm2-util failed: {output.decode(errors='replace')}")
    finally:
        os.close(master)
