"""docs/configuration.md, generated from the configuration schemas (scripts/gen-config-docs).

tests/unit/test_config_schema.py fails when the file differs from what this renders."""

from __future__ import annotations

import sys
from pathlib import Path

from adapters.evm.config_schema import EvmToml
from core.config_schema import CoreToml
from telemetry.config_schema import reference

HEADER = """# Configuration reference

Generated from `core/config_schema.py` and `adapters/evm/config_schema.py` by
`scripts/gen-config-docs`; do not edit by hand. Every file is TOML. An unknown
key or a value of the wrong type is refused at start with one line naming the
file and the key (`core.toml: unknown key 'chains[0].confirmation'`); the
process exits 2. The signer's `signer.toml` is checked by `signer/config.py`
the same way and described in docs/hsm-runbook.md.
"""


def render() -> str:
    return "\n".join([HEADER, reference("core.toml", CoreToml), reference("evm.toml", EvmToml)])


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0] if argv else "docs/configuration.md")
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
