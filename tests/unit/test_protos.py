"""The contract: protos lint clean and gen/ is what scripts/gen-protos writes."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

from localstack.paths import BUF, REPO


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [str(REPO / "scripts" / "gen-protos"), str(tmp_path)], check=True, capture_output=True
    )
    fresh, checked_in = _tree(tmp_path / "kassa"), _tree(REPO / "gen" / "kassa")
    assert fresh.keys() == checked_in.keys(), (
        "gen/ has missing or extra files: run scripts/gen-protos"
    )
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"gen/ is stale in {stale}: run scripts/gen-protos and commit"
    assert not filecmp.dircmp(tmp_path / "kassa", REPO / "gen" / "kassa").diff_files


def test_protos_pass_buf_lint_standard() -> None:
    result = subprocess.run([str(BUF), "lint"], cwd=REPO / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
