"""The signing policy file: ordered rules, caps, velocity caps and destination allowlists.

The file is reviewed by security and loaded as bytes; its SHA-256 is the
policy hash recorded in every decision, so an auditor can tell exactly which
reviewed text decided. Parsing is strict: an unknown key is an error, never
ignored, because a misspelt `threshold` silently dropped would weaken policy.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from signer.chains.intent import PURPOSES

Action = Literal["allow", "block", "require_approvals"]
DEFAULT_WINDOW_S = 86_400
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")


class PolicyError(ValueError):
    """The policy file cannot be used; one line naming where."""


@dataclass(frozen=True)
class Match:
    """Every stated field must hold for the rule to match; unstated fields match anything."""

    caller_roles: frozenset[str] | None = None
    key_ids: tuple[str, ...] | None = None  # exact ids, or a prefix ending in "*" ("hd:*")
    purposes: frozenset[str] | None = None
    assets: frozenset[str] | None = None
    destination_in: str | None = None  # allowlist name
    destination_not_in: str | None = None  # allowlist name
    amount_above: int | None = None  # strictly greater than
    amount_below: int | None = None  # strictly less than


@dataclass(frozen=True)
class Rule:
    name: str
    match: Match
    action: Action
    approvers: frozenset[str] = frozenset()
    threshold: int = 0


@dataclass(frozen=True)
class VelocityCap:
    """At most max_amount of asset leaves through one key within any rolling window_s."""

    key_id: str  # exact id, a prefix ending in "*", or "*" for every key separately
    asset: str
    max_amount: int
    window_s: int = DEFAULT_WINDOW_S


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    tx_caps: Mapping[str, int]
    velocity: tuple[VelocityCap, ...]
    allowlists: Mapping[str, frozenset[str]]
    hash: str  # sha256 hex of the file bytes


def key_matches(pattern: str, key_id: str) -> bool:
    if pattern.endswith("*"):
        return key_id.startswith(pattern[:-1])
    return key_id == pattern


def policy_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_policy(data: bytes, known_approvers: frozenset[str] | None = None) -> Policy:
    """known_approvers: the configured approver key ids; a rule naming another is an error."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"not valid UTF-8 TOML: {exc}") from None
    _only(raw, {"version", "rules", "caps", "velocity", "allowlists"}, "policy")
    if raw.get("version", 1) != 1:
        raise PolicyError("version must be 1")
    allowlists = _allowlists(raw.get("allowlists", {}))
    caps = _caps(raw.get("caps", {}))
    velocity = tuple(_velocity(i, v) for i, v in enumerate(_array(raw, "velocity")))
    rules = tuple(
        _rule(i, r, allowlists, known_approvers) for i, r in enumerate(_array(raw, "rules"))
    )
    if len({r.name for r in rules}) != len(rules):
        raise PolicyError("rule names must be unique")
    return Policy(rules, caps, velocity, allowlists, policy_hash(data))


def _only(table: Any, allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise PolicyError(f"{where} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise PolicyError(f"unknown key {where}.{sorted(unknown)[0]}")


def _array(raw: dict[str, Any], name: str) -> list[Any]:
    value = raw.get(name, [])
    if not isinstance(value, list):
        raise PolicyError(f"{name} must be an array of tables: [[{name}]]")
    return value


def amount_of(value: Any, where: str) -> int:
    """Base units as a TOML integer or a decimal string (TOML integers stop at 2^63)."""
    if isinstance(value, bool):
        raise PolicyError(f"{where} must be an amount in base units")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and _AMOUNT.fullmatch(value):
        return int(value)
    raise PolicyError(f"{where} must be a non-negative integer or decimal string in base units")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise PolicyError(f"{where} must be a non-empty string or list of strings")
    return tuple(items)


def _allowlists(raw: Any) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict):
        raise PolicyError("allowlists must be a table of name = [addresses]")
    out = {}
    for name, addresses in raw.items():
        for address in _strings(addresses, f"allowlists.{name}"):
            if _ADDRESS.fullmatch(address) is None:
                raise PolicyError(f"allowlists.{name}: {address!r} is not a 0x address")
        out[name] = frozenset(a.lower() for a in _strings(addresses, name))
    return out


def _caps(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise PolicyError("caps must be a table of asset = max amount")
    return {asset: amount_of(value, f"caps.{asset}") for asset, value in raw.items()}


def _velocity(index: int, raw: Any) -> VelocityCap:
    where = f"velocity[{index}]"
    _only(raw, {"key_id", "asset", "max_amount", "window_s"}, where)
    for required in ("key_id", "asset", "max_amount"):
        if required not in raw:
            raise PolicyError(f"{where} needs {required}")
    window_s = raw.get("window_s", DEFAULT_WINDOW_S)
    if not isinstance(window_s, int) or isinstance(window_s, bool) or window_s <= 0:
        raise PolicyError(f"{where}.window_s must be a positive integer of seconds")
    return VelocityCap(
        _strings(raw["key_id"], f"{where}.key_id")[0],
        _strings(raw["asset"], f"{where}.asset")[0],
        amount_of(raw["max_amount"], f"{where}.max_amount"),
        window_s,
    )


_RULE_KEYS = {
    "name",
    "action",
    "approvers",
    "threshold",
    "caller_role",
    "key_id",
    "purpose",
    "asset",
    "destination_in",
    "destination_not_in",
    "amount_above",
    "amount_below",
}


def _rule(
    index: int,
    raw: Any,
    allowlists: Mapping[str, frozenset[str]],
    known_approvers: frozenset[str] | None,
) -> Rule:
    where = f"rules[{index}]"
    _only(raw, _RULE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where} needs a name")
    where = f"rule {name!r}"
    action = raw.get("action")
    if action not in ("allow", "block", "require_approvals"):
        raise PolicyError(f"{where}: action must be allow, block or require_approvals")
    purposes = raw.get("purpose")
    if purposes is not None and not set(_strings(purposes, "purpose")) <= set(PURPOSES):
        raise PolicyError(f"{where}: purpose must be among {', '.join(PURPOSES)}")
    for list_key in ("destination_in", "destination_not_in"):
        if list_key in raw and raw[list_key] not in allowlists:
            raise PolicyError(f"{where}: {list_key} names no allowlist {raw[list_key]!r}")

    def opt_set(key: str) -> frozenset[str] | None:
        return None if key not in raw else frozenset(_strings(raw[key], f"{where}.{key}"))

    match = Match(
        caller_roles=opt_set("caller_role"),
        key_ids=None if "key_id" not in raw else _strings(raw["key_id"], f"{where}.key_id"),
        purposes=opt_set("purpose"),
        assets=opt_set("asset"),
        destination_in=raw.get("destination_in"),
        destination_not_in=raw.get("destination_not_in"),
        amount_above=None
        if "amount_above" not in raw
        else amount_of(raw["amount_above"], f"{where}.amount_above"),
        amount_below=None
        if "amount_below" not in raw
        else amount_of(raw["amount_below"], f"{where}.amount_below"),
    )
    if action != "require_approvals":
        if "approvers" in raw or "threshold" in raw:
            raise PolicyError(f"{where}: approvers and threshold belong to require_approvals")
        return Rule(name, match, action)
    approvers = frozenset(_strings(raw.get("approvers", []) or [""], f"{where}.approvers"))
    threshold = raw.get("threshold")
    if (
        not isinstance(threshold, int)
        or isinstance(threshold, bool)
        or not (1 <= threshold <= len(approvers))
    ):
        raise PolicyError(f"{where}: threshold must be between 1 and the number of approvers")
    if known_approvers is not None and not approvers <= known_approvers:
        unknown = sorted(approvers - known_approvers)[0]
        raise PolicyError(f"{where}: approver {unknown!r} is not configured in [[approvers]]")
    return Rule(name, match, "require_approvals", approvers, threshold)
