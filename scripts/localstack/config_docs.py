"""docs/configuration.md, generated from the configuration schemas (scripts/gen-config-docs).

tests/unit/test_config_schema.py fails when the file differs from what this renders."""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import msgspec

from adapters.evm.config_schema import EvmToml
from core.config_schema import CoreToml
from signer.config_schema import SignerToml

HEADER = """# Configuration reference

Generated from `core/config_schema.py`, `adapters/evm/config_schema.py` and
`signer/config_schema.py` by `scripts/gen-config-docs`; do not edit by hand.
Every file is TOML. An unknown key, a value of the wrong type or a missing
required key is refused at start with one line naming the file and the key
(`core.toml: unknown key 'chains[0].confirmation'`); the process exits 2.
Relative paths in signer.toml are relative to the file; the signer's policy
file is described in docs/hsm-runbook.md.
"""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "table"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "table"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _describe(struct: type[msgspec.Struct], rows: list[str], tables: list[Any]) -> None:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = typing.get_type_hints(struct, include_extras=True)
    for field in info.fields:
        hint = hints[field.name]
        meta = [
            m
            for m in typing.get_args(hint)[1:]
            if typing.get_origin(hint) is typing.Annotated and isinstance(m, msgspec.Meta)
        ]
        description = (meta[0].description if meta else None) or ""
        nested = _nested(hint)
        if field.required:
            default = "required"
        elif field.default is not msgspec.NODEFAULT:
            default = "none" if field.default is None else f"`{_toml(field.default)}`"
        else:
            default = "see below" if nested is not None else "empty"
        rows.append(f"| `{field.name}` | {_type_name(hint)} | {default} | {description} |")
        if nested is not None:
            tables.append((field.name, _type_name(hint).startswith("list of"), nested))


def _nested(hint: Any) -> type[msgspec.Struct] | None:
    args = [hint]
    while args:
        tp = args.pop()
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return tp
        args.extend(typing.get_args(tp))
    return None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def reference(title: str, schema: type[msgspec.Struct]) -> str:
    """Markdown: one table of keys per TOML table, in schema order."""
    out = [f"## {title}", ""]
    queue: list[Any] = [("", False, schema)]
    while queue:
        name, many, struct = queue.pop(0)
        rows: list[str] = []
        tables: list[Any] = []
        _describe(struct, rows, tables)
        heading = ("### `[[%s]]`" if many else "### `[%s]`") % name if name else "### top level"
        doc = (struct.__doc__ or "").strip()
        out += [heading, "", *([doc, ""] if doc else [])]
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
        queue.extend((f"{name}.{n}" if name else n, m, t) for n, m, t in tables)
    return "\n".join(out)


def render() -> str:
    return "\n".join(
        [
            HEADER,
            reference("core.toml", CoreToml),
            reference("evm.toml", EvmToml),
            reference("signer.toml", SignerToml),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0] if argv else "docs/configuration.md")
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
