"""Every error reason and event type the API can return is documented, and
every documented one exists in the code (issue 19).

Reasons are found in the code by following them into the error: every
argument in the reason slot of Refusal (and its subclasses), of the invoice
decider's Refusal, and of any function that passes one of its parameters on
into such a slot (found to a fixed point, so `_failed(code, reason, …)` and
`not_found(what, …)` → `WHAT_NOT_FOUND` are followed too). Each must be a
string literal, a constant of core/reasons.py, or the `.reason` of a refusal
already counted — a reason the scan cannot know statically fails the test.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import reasons
from core.invoices import state

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
REASON = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
CATALOGUE = {v for k, v in vars(reasons).items() if k.isupper() and isinstance(v, str)}


@dataclass(frozen=True)
class Slot:
    """Where a callable takes a reason: positional index and keyword name;
    `suffix` set: the reason is the argument upper-cased plus this suffix."""

    index: int
    keyword: str
    suffix: str | None = None


def _section(heading: str) -> str:
    text = API_DOC.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _table_column(section: str, column: int) -> set[str]:
    cells = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cell = line.split("|")[column + 1]
            cells.update(re.findall(r"`([^`]+)`", cell))
    return cells


def documented_reasons() -> set[str]:
    return {c for c in _table_column(_section("Errors"), 1) if REASON.fullmatch(c)}


def documented_event_types() -> set[str]:
    return {c for c in _table_column(_section("Events"), 0) if "." in c}


@dataclass
class Module:
    name: str  # dotted, e.g. core.invoices.state
    path: Path
    tree: ast.Module
    names: dict[str, str]  # a name used here -> the qualified name it stands for


def _modules() -> list[Module]:
    modules = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        if path.name == "reasons.py":
            continue
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        dotted = dotted.removesuffix(".__init__")
        tree = ast.parse(path.read_text(), str(path))
        names: dict[str, str] = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    names[alias.asname or alias.name.split(".")[0]] = alias.name
            elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names[node.name] = f"{dotted}.{node.name}"
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names[target.id] = f"{dotted}.{target.id}"
        modules.append(Module(dotted, path, tree, names))
    return modules


def _qualified(module: Module, func: ast.expr) -> str:
    """The qualified name a call's callee stands for ("" if not statically known)."""
    if isinstance(func, ast.Name):
        return module.names.get(func.id, "")
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        base = module.names.get(func.value.id, "")
        return f"{base}.{func.attr}" if base else ""
    return ""


def _argument(call: ast.Call, slot: Slot) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == slot.keyword:
            return k.value
    return call.args[slot.index] if len(call.args) > slot.index else None


def _class_slot(node: ast.ClassDef) -> Slot | None:
    """Where a class takes `reason`: its __init__'s parameter or its dataclass field."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            params = [a.arg for a in item.args.args][1:]
            return Slot(params.index("reason"), "reason") if "reason" in params else None
    fields = [
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    ]
    return Slot(fields.index("reason"), "reason") if "reason" in fields else None


def _carriers(modules: list[Module]) -> dict[str, Slot]:
    """Qualified names of every callable that puts an argument into an error's reason."""
    by_name = {m.name: m for m in modules}
    carriers: dict[str, Slot] = {}
    # The error types: classes that are, or derive from, an exception taking a
    # reason, and the decider's Refusal (its reason becomes the error's).
    for m in modules:
        for node in m.tree.body:
            if isinstance(node, ast.ClassDef):
                slot = _class_slot(node)
                if slot is not None and (
                    any(isinstance(b, ast.Name) and b.id == "Exception" for b in node.bases)
                    or node.name == "Refusal"
                ):
                    carriers[f"{m.name}.{node.name}"] = slot
    changed = True
    while changed:
        changed = False
        for m in modules:
            for node in m.tree.body:
                qualified = f"{m.name}.{getattr(node, 'name', '')}"
                if isinstance(node, ast.ClassDef) and qualified not in carriers:
                    for base in node.bases:
                        target = _qualified(m, base)
                        if target in carriers and _class_slot(node) is None:
                            carriers[qualified] = carriers[target]
                            changed = True
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
                    target = m.names.get(node.value.id, "")
                    for t in node.targets:
                        alias = f"{m.name}.{getattr(t, 'id', '')}"
                        if target in carriers and alias not in carriers:
                            carriers[alias] = carriers[target]
                            changed = True
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if qualified in carriers:
                    continue
                params = [a.arg for a in node.args.args]
                for call in (c for c in ast.walk(node) if isinstance(c, ast.Call)):
                    slot = carriers.get(_qualified(m, call.func))
                    arg = None if slot is None else _argument(call, slot)
                    if isinstance(arg, ast.Name) and arg.id in params:
                        carriers[qualified] = Slot(params.index(arg.id), arg.id)
                        changed = True
                        break
                    suffix = _upper_suffix(arg, params)
                    if suffix is not None:
                        name, tail = suffix
                        carriers[qualified] = Slot(params.index(name), name, tail)
                        changed = True
                        break
        # Names re-exported from another module (from core.errors import not_found).
        for m in modules:
            for local, target in m.names.items():
                alias = f"{m.name}.{local}"
                if target in carriers and alias not in carriers and target != alias:
                    module, _, _ = target.rpartition(".")
                    if module in by_name:
                        carriers[alias] = carriers[target]
                        changed = True
    return carriers


def _upper_suffix(arg: ast.expr | None, params: list[str]) -> tuple[str, str] | None:
    """f"{param.upper()}SUFFIX" -> (param, SUFFIX)."""
    if not isinstance(arg, ast.JoinedStr) or len(arg.values) != 2:
        return None
    head, tail = arg.values
    if (
        isinstance(head, ast.FormattedValue)
        and isinstance(head.value, ast.Call)
        and isinstance(head.value.func, ast.Attribute)
        and head.value.func.attr == "upper"
        and isinstance(head.value.func.value, ast.Name)
        and head.value.func.value.id in params
        and isinstance(tail, ast.Constant)
    ):
        return head.value.func.value.id, str(tail.value)
    return None


def reasons_in_code() -> tuple[set[str], list[str]]:
    """(reasons the code returns, places whose reason cannot be known statically)."""
    modules = _modules()
    carriers = _carriers(modules)
    found: set[str] = set()
    unknown: list[str] = []
    for m in modules:
        constants = {
            t.id: n.value.value
            for n in m.tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        enclosing = {
            inner: f"{m.name}.{f.name}"
            for f in m.tree.body
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for inner in ast.walk(f)
        }
        for call in (c for c in ast.walk(m.tree) if isinstance(c, ast.Call)):
            slot = carriers.get(_qualified(m, call.func))
            arg = None if slot is None else _argument(call, slot)
            if slot is None or arg is None:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value.upper() + slot.suffix if slot.suffix else arg.value)
            elif isinstance(arg, ast.Attribute) and arg.attr == "reason":
                continue  # a refusal's reason passed on: counted where it was made
            elif isinstance(arg, ast.Attribute) and m.names.get(getattr(arg.value, "id", "")) in {
                "core.reasons"
            }:
                found.add(getattr(reasons, arg.attr))
            elif isinstance(arg, ast.Name) and m.names.get(arg.id, "").startswith("core.reasons."):
                found.add(getattr(reasons, arg.id))
            elif isinstance(arg, ast.Name) and arg.id in constants:
                found.add(str(constants[arg.id]))
            elif enclosing.get(call) not in carriers:  # a forwarder's own parameter
                unknown.append(f"{m.path.relative_to(ROOT)}:{call.lineno}")
    return found, unknown


def test_every_reason_in_the_code_is_known_statically() -> None:
    _, unknown = reasons_in_code()
    assert unknown == []


def test_the_code_returns_exactly_the_catalogued_reasons() -> None:
    found, _ = reasons_in_code()
    assert found - CATALOGUE == set(), "returned by the code but not in core/reasons.py"
    assert CATALOGUE - found == set(), "in core/reasons.py but returned nowhere"


def test_docs_list_exactly_the_catalogued_reasons() -> None:
    documented = documented_reasons()
    assert CATALOGUE - documented == set(), "missing from docs/api.md"
    assert documented - CATALOGUE == set(), "in docs/api.md but not in the code"


def test_docs_list_exactly_the_invoice_event_types() -> None:
    documented = {t for t in documented_event_types() if t.startswith(("invoice.", "payment."))}
    assert documented == set(state.EVENT_TYPES)


@pytest.mark.parametrize("state_", list(state.State))
def test_every_invoice_state_has_its_own_event_type(state_: state.State) -> None:
    expected = "invoice.created" if state_ is state.State.AWAITING_PAYMENT else state_.value
    assert state.STATE_EVENT[state_] in state.EVENT_TYPES
    assert state.STATE_EVENT[state_].endswith(expected)
    assert list(state.STATE_EVENT.values()).count(state.STATE_EVENT[state_]) == 1


def test_the_scan_follows_reasons_through_helpers() -> None:
    # A check of the checker: reasons raised only through helpers are found.
    found, _ = reasons_in_code()
    assert {"INVOICE_NOT_FOUND", "CREDENTIALS_MISSING", "INSUFFICIENT_FUNDS"} <= found
    assert "INVOICE_HAS_FUNDS" in found  # a core/reasons.py constant, in the decider
