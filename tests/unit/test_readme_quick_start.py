"""README's quick start stays two commands, and points to docs/operations.md for
production (#13)."""

from __future__ import annotations

import re

from localstack.paths import REPO


def test_the_quick_start_is_exactly_two_commands_and_points_to_operations() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no sh block in the quick start"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert [c.split()[0] for c in commands] == ["scripts/demo", "scripts/test"], commands
    assert "(docs/operations.md)" in section
    assert (REPO / "docs" / "operations.md").is_file()
