"""Strict reading of a process's TOML against a declarative schema (msgspec Structs).

A schema is a tree of `msgspec.Struct` classes with `forbid_unknown_fields`:
an unknown key (`confirmation = 12`, `[invoice]`) or a wrong type (`true`
where a number goes, `"abc"` where an integer goes) is refused with one line
naming the file and the key, before any semantic check runs. The same
schema generates docs/configuration.md (`reference`), so the reference
cannot drift from what is accepted.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import msgspec

_AT = re.compile(r"(.*?)(?: - at `\$(.*)`)?")
_UNKNOWN = re.compile(r"Object contains unknown field `(.+)`")


class SchemaError(ValueError):
    """One line: the file, the key and what is wrong with it."""


def _key(path: str) -> str:
    """msgspec's `$.chains[0].tiers[1]` -> `chains[0].tiers[1]`."""
    return path.lstrip(".")


def check(raw: dict[str, Any], schema: type[msgspec.Struct], source: Path | str) -> None:
    """Raises SchemaError naming the first unknown key or wrongly typed value."""
    try:
        msgspec.convert(raw, schema, strict=True)
    except msgspec.ValidationError as exc:
        message, at = _AT.fullmatch(str(exc)).groups()  # type: ignore[union-attr]
        where = _key(at or "")
        unknown = _UNKNOWN.fullmatch(message)
        if unknown:
            key = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            raise SchemaError(f"{source}: unknown key {key!r}") from None
        message = message.replace("`", "")
        raise SchemaError(
            f"{source}: {where or 'the file'}: {message[0].lower()}{message[1:]}"
        ) from None


def load_toml(path: Path, schema: type[msgspec.Struct]) -> dict[str, Any]:
    """The file's tables, checked against `schema`; SchemaError for an unreadable file too."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SchemaError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{path}: not valid TOML: {exc}") from None
    check(raw, schema, path)
    return raw


# -- the reference -------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
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
