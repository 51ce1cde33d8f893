"""Every error reason and event type the API can return is documented, and
every documented one exists in the code (issue 19).

Reasons are found in the code by following them into the error: every
argument in the reason slot of ApiError (and its subclasses), of the invoice
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


def _modules() -> list[tuple[Path, ast.Module]]:
    return [
        (p, ast.parse(p.read_text(), str(p)))
        for p in sorted((ROOT / "core").rglob("*.py"))
        if p.name != "reasons.py"
    ]


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _argument(call: ast.Call, slot: Slot) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == slot.keyword:
            return k.value
    return call.args[slot.index] if len(call.args) > slot.index else None


def _carriers(modules: list[tuple[Path, ast.Module]]) -> dict[str, Slot]:
    carriers = {"ApiError": Slot(1, "reason"), "Refusal": Slot(0, "reason")}
    changed = True
    while changed:
        changed = False
        for _, tree in modules:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in carriers:
                    bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                    if bases & {"ApiError"} or any(b in carriers for b in bases - {"Exception"}):
                        carriers[node.name] = carriers["ApiError"]
                        changed = True
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if node.name in carriers:
                    continue
                params = [a.arg for a in node.args.args]
                for call in (c for c in ast.walk(node) if isinstance(c, ast.Call)):
                    slot = carriers.get(_callee(call))
                    arg = None if slot is None else _argument(call, slot)
                    if isinstance(arg, ast.Name) and arg.id in params:
                        carriers[node.name] = Slot(params.index(arg.id), arg.id)
                        changed = True
                        break
                    if isinstance(arg, ast.JoinedStr) and len(arg.values) == 2:
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
                            name = head.value.func.value.id
                            carriers[node.name] = Slot(params.index(name), name, str(tail.value))
                            changed = True
                            break
    return carriers


def reasons_in_code() -> tuple[set[str], list[str]]:
    """(reasons the code returns, places whose reason cannot be known statically)."""
    modules = _modules()
    carriers = _carriers(modules)
    found: set[str] = set()
    unknown: list[str] = []
    for path, tree in modules:
        constants = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        functions = {
            n: f
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)
        }
        for call in (c for c in ast.walk(tree) if isinstance(c, ast.Call)):
            slot = carriers.get(_callee(call))
            arg = None if slot is None else _argument(call, slot)
            if slot is None or arg is None:
                continue
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            enclosing = functions.get(call)
            forwarded = enclosing is not None and enclosing.name in carriers
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value.upper() + slot.suffix if slot.suffix else arg.value)
            elif isinstance(arg, ast.Attribute) and arg.attr == "reason":
                continue  # a refusal's reason passed on: counted where it was made
            elif (
                isinstance(arg, ast.Attribute)
                and isinstance(arg.value, ast.Name)
                and arg.value.id == "reasons"
            ):
                found.add(getattr(reasons, arg.attr))
            elif isinstance(arg, ast.Name) and arg.id in constants:
                found.add(str(constants[arg.id]))
            elif not forwarded:
                unknown.append(where)
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
