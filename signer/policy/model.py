"""The signing policy file: chains (treasury, gas-funding bound, fee caps), per-transaction
caps, velocity caps, destination allowlists and ordered rules.

The file is reviewed by security and loaded as bytes; its SHA-256 is the
policy hash recorded in every decision, so an auditor can tell exactly which
reviewed text decided. Parsing is strict and default-deny (docs/threat-model.md,
"Signer policy: evaluation order", is the normative description):
- an unknown key is an error, never ignored (a misspelt `threshold` silently
  dropped would weaken policy);
- every rule that can allow (allow, require_approvals) pins chain, asset,
  key_id and purpose; every chain it names has a [chains] entry with fee caps;
  every asset it names has a per-transaction cap (`"unlimited"` is the only,
  explicit, way out); every hot key it names has a velocity cap for each asset
  it moves, the chain's native coin included (fees count toward it);
- a rule that an earlier rule shadows (it could never match) is an error;
- addresses are validated and canonicalised (lowercase) at load: a mixed-case
  address whose EIP-55 checksum is wrong is an error, so a typo can never
  silently stop a cap or an allowlist from matching.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from signer.chains import tron_address
from signer.chains.intent import PURPOSES
from signer.secp256k1 import keccak256

Action = Literal["allow", "block", "require_approvals"]
DEFAULT_WINDOW_S = 86_400
UNLIMITED = "unlimited"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")
# CAIP-2: EVM chains by chain id, TRON chains by the chain id java-tron's JSON-RPC answers
# (eth_chainId: the genesis block hash's last 4 bytes, e.g. mainnet tron:0x2b6653dc).
_CHAIN = re.compile(r"eip155:[1-9][0-9]{0,18}|tron:0x[0-9a-f]{8}")
_NATIVE = re.compile(r"(eip155:[1-9][0-9]{0,18})/slip44:60|(tron:0x[0-9a-f]{8})/slip44:195")
_ERC20 = re.compile(r"(eip155:[1-9][0-9]{0,18})/erc20:(0x[0-9a-fA-F]{40})")
_TRC20 = re.compile(r"(tron:0x[0-9a-f]{8})/trc20:(T[1-9A-HJ-NP-Za-km-z]{33})")
_HD_PATTERN = re.compile(r"hd:(\*|0|[1-9][0-9]{0,9})")


class PolicyError(ValueError):
    """The policy file cannot be used; one line naming where."""


@dataclass(frozen=True)
class ChainPolicy:
    """What the signer itself knows about a chain, whatever the caller says."""

    chain: str  # CAIP-2, "eip155:1"
    treasury: str | None  # lowercase 0x; the only destination of a SWEEP
    gas_funding_max: int  # wei per GAS_FUNDING request; 0: no gas funding on this chain
    max_fee_per_gas: int  # wei (EIP-1559 maxFeePerGas, legacy gasPrice); TRON: 0
    max_gas: int  # gas limit; TRON: 0
    max_total_fee: int  # wei: gas limit x max fee per gas; TRON: sun, fee_limit + burn bound
    max_fee_limit: int = 0  # TRON: sun, raw_data.fee_limit; EVM: 0

    @property
    def native_asset(self) -> str:
        return native_asset(self.chain)


@dataclass(frozen=True)
class Match:
    """Every stated field must hold for the rule to match; unstated fields match anything."""

    caller_roles: frozenset[str] | None = None
    key_ids: tuple[str, ...] | None = None  # exact ids, or a prefix ending in "*" ("hd:*")
    purposes: frozenset[str] | None = None
    chains: frozenset[str] | None = None
    assets: frozenset[str] | None = None  # canonical (lowercase addresses)
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
    """At most max_amount of asset leaves within any rolling window_s through the keys
    key_id names — together: a pattern ("hd:*", "*") is ONE bucket shared by every key it
    matches, so N deposit keys do not get N times the cap."""

    key_id: str  # exact id, or a prefix ending in "*"
    asset: str
    max_amount: int
    window_s: int = DEFAULT_WINDOW_S

    @property
    def bucket(self) -> str:
        """The velocity counter's name: one per exact key, one per pattern."""
        return f"pattern:{self.key_id}" if self.key_id.endswith("*") else f"key:{self.key_id}"


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    tx_caps: Mapping[str, int | None]  # asset -> cap in base units; None: reviewed "unlimited"
    velocity: tuple[VelocityCap, ...]
    allowlists: Mapping[str, frozenset[str]]
    hash: str  # sha256 hex of the file bytes
    chains: Mapping[str, ChainPolicy]


def native_asset(chain: str) -> str:
    """The coin fees are paid in: ETH-like (SLIP-44 60) on eip155 chains, TRX (195) on TRON."""
    return f"{chain}/slip44:195" if chain.startswith("tron:") else f"{chain}/slip44:60"


def key_matches(pattern: str, key_id: str) -> bool:
    if pattern.endswith("*"):
        return key_id.startswith(pattern[:-1])
    return key_id == pattern


def pattern_covers(outer: str, inner: str) -> bool:
    """Every key id inner matches, outer matches too."""
    if outer.endswith("*"):
        return inner.removesuffix("*").startswith(outer[:-1])
    return not inner.endswith("*") and inner == outer


def is_hd_pattern(pattern: str) -> bool:
    """A key pattern that can only match deposit keys hd:<index>."""
    return _HD_PATTERN.fullmatch(pattern) is not None


def policy_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_address(text: str, where: str) -> str:
    """Lowercase 0x address; mixed case must carry a valid EIP-55 checksum. A TRON address
    is base58check (case is part of it) and must carry a valid checksum and the 0x41 prefix."""
    if text.startswith("T"):
        if not tron_address.is_address(text):
            raise PolicyError(f"{where}: {text!r} is not a TRON address (bad checksum or prefix)")
        return text
    if _ADDRESS.fullmatch(text) is None:
        raise PolicyError(f"{where}: {text!r} is not a 0x address of 20 bytes")
    hexpart = text[2:]
    if hexpart != hexpart.lower() and hexpart != hexpart.upper() and eip55(text) != text:
        raise PolicyError(f"{where}: {text!r} has a wrong EIP-55 checksum (a typo?)")
    return text.lower()


def eip55(address: str) -> str:
    lower = address[2:].lower()
    digest = keccak256(lower.encode()).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower)
    )


def canonical_asset(text: str, where: str) -> str:
    if _NATIVE.fullmatch(text) is not None:
        return text
    trc20 = _TRC20.fullmatch(text)
    if trc20 is not None:
        return f"{trc20.group(1)}/trc20:{canonical_address(trc20.group(2), where)}"
    erc20 = _ERC20.fullmatch(text)
    if erc20 is None:
        raise PolicyError(
            f"{where}: {text!r} is not eip155:N/slip44:60, eip155:N/erc20:0x…, "
            "tron:0x…/slip44:195 or tron:0x…/trc20:T…"
        )
    return f"{erc20.group(1)}/erc20:{canonical_address(erc20.group(2), where)}"


def chain_of_asset(asset: str) -> str:
    return asset.split("/", 1)[0]


def parse_policy(data: bytes, known_approvers: frozenset[str] | None = None) -> Policy:
    """known_approvers: the configured approver key ids; a rule naming another is an error."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"not valid UTF-8 TOML: {exc}") from None
    _only(raw, {"version", "chains", "rules", "caps", "velocity", "allowlists"}, "policy")
    if raw.get("version", 1) != 1:
        raise PolicyError("version must be 1")
    chains = _chains(raw.get("chains", {}))
    allowlists = _allowlists(raw.get("allowlists", {}))
    caps = _caps(raw.get("caps", {}))
    velocity = tuple(_velocity(i, v) for i, v in enumerate(_array(raw, "velocity")))
    rules = tuple(
        _rule(i, r, allowlists, known_approvers) for i, r in enumerate(_array(raw, "rules"))
    )
    if len({r.name for r in rules}) != len(rules):
        raise PolicyError("rule names must be unique")
    policy = Policy(rules, caps, velocity, allowlists, policy_hash(data), chains)
    for rule in rules:
        _check_allowing(rule, policy)
    _check_shadowing(rules)
    return policy


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


_CHAIN_KEYS = {
    "treasury",
    "gas_funding_max",
    "max_fee_per_gas",
    "max_gas",
    "max_total_fee",
}
# TRON has no gas price or gas limit in a transaction: fee_limit caps a contract call's energy.
_TRON_CHAIN_KEYS = {"treasury", "gas_funding_max", "max_fee_limit", "max_total_fee"}


def _chains(raw: Any) -> dict[str, ChainPolicy]:
    if not isinstance(raw, dict):
        raise PolicyError('chains must be a table of [chains."eip155:N"] tables')
    out = {}
    for chain, table in raw.items():
        where = f"chains.{chain!r}"
        if _CHAIN.fullmatch(chain) is None:
            raise PolicyError(f"{where}: not a CAIP-2 eip155 or tron chain id")
        tron = chain.startswith("tron:")
        _only(table, _TRON_CHAIN_KEYS if tron else _CHAIN_KEYS, where)
        fee_keys = ("max_fee_limit",) if tron else ("max_fee_per_gas", "max_gas")
        for required in (*fee_keys, "max_total_fee"):
            if required not in table:
                raise PolicyError(f"{where} needs {required} (fees are capped per chain)")
        treasury = table.get("treasury")
        if treasury is not None and not isinstance(treasury, str):
            raise PolicyError(f"{where}.treasury must be an address")
        if treasury is not None and tron != treasury.startswith("T"):
            raise PolicyError(f"{where}.treasury is not an address of this chain")

        def fee(key: str, where: str = where, table: Any = table) -> int:
            return 0 if key not in table else amount_of(table[key], f"{where}.{key}")

        out[chain] = ChainPolicy(
            chain=chain,
            treasury=None if treasury is None else canonical_address(treasury, f"{where}.treasury"),
            gas_funding_max=fee("gas_funding_max"),
            max_fee_per_gas=fee("max_fee_per_gas"),
            max_gas=fee("max_gas"),
            max_total_fee=fee("max_total_fee"),
            max_fee_limit=fee("max_fee_limit"),
        )
    return out


def _allowlists(raw: Any) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict):
        raise PolicyError("allowlists must be a table of name = [addresses]")
    return {
        name: frozenset(
            canonical_address(a, f"allowlists.{name}")
            for a in _strings(addresses, f"allowlists.{name}")
        )
        for name, addresses in raw.items()
    }


def _caps(raw: Any) -> dict[str, int | None]:
    if not isinstance(raw, dict):
        raise PolicyError("caps must be a table of asset = max amount")
    out: dict[str, int | None] = {}
    for asset, value in raw.items():
        where = f"caps.{asset}"
        canonical = canonical_asset(asset, where)
        if canonical in out:
            raise PolicyError(f"{where}: the asset is capped twice")
        out[canonical] = None if value == UNLIMITED else amount_of(value, where)
    return out


def _velocity(index: int, raw: Any) -> VelocityCap:
    where = f"velocity[{index}]"
    _only(raw, {"key_id", "asset", "max_amount", "window_s"}, where)
    for required in ("key_id", "asset", "max_amount"):
        if required not in raw:
            raise PolicyError(f"{where} needs {required}")
    window_s = raw.get("window_s", DEFAULT_WINDOW_S)
    if not isinstance(window_s, int) or isinstance(window_s, bool) or window_s <= 0:
        raise PolicyError(f"{where}.window_s must be a positive integer of seconds")
    key_id = raw["key_id"]
    if not isinstance(key_id, str) or not key_id or "*" in key_id[:-1]:
        raise PolicyError(f"{where}.key_id must be a key id or a prefix ending in '*'")
    asset = raw["asset"]
    if not isinstance(asset, str):
        raise PolicyError(f"{where}.asset must be a CAIP-19 asset")
    return VelocityCap(
        key_id,
        canonical_asset(asset, f"{where}.asset"),
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
    "chain",
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
    chains = None if "chain" not in raw else frozenset(_strings(raw["chain"], f"{where}.chain"))
    for chain in chains or ():
        if _CHAIN.fullmatch(chain) is None:
            raise PolicyError(f"{where}: chain {chain!r} is not a CAIP-2 eip155 or tron chain id")
    key_ids = None if "key_id" not in raw else _strings(raw["key_id"], f"{where}.key_id")
    for pattern in key_ids or ():
        if "*" in pattern[:-1]:
            raise PolicyError(f"{where}: key_id {pattern!r}: '*' only at the end")

    def opt_set(key: str) -> frozenset[str] | None:
        return None if key not in raw else frozenset(_strings(raw[key], f"{where}.{key}"))

    match = Match(
        caller_roles=opt_set("caller_role"),
        key_ids=key_ids,
        purposes=opt_set("purpose"),
        chains=chains,
        assets=None
        if "asset" not in raw
        else frozenset(canonical_asset(a, where) for a in _strings(raw["asset"], where)),
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


def _check_allowing(rule: Rule, policy: Policy) -> None:
    """Default deny for a rule that can allow: everything it lets through is bounded."""
    if rule.action == "block":
        return
    where = f"rule {rule.name!r}"
    m = rule.match
    for name, value in (
        ("chain", m.chains),
        ("asset", m.assets),
        ("key_id", m.key_ids),
        ("purpose", m.purposes),
    ):
        if value is None:
            raise PolicyError(f"{where}: a rule that allows must pin {name} (unpinned {name})")
    assert m.chains is not None and m.assets is not None and m.key_ids is not None
    assert m.purposes is not None
    for chain in sorted(m.chains):
        entry = policy.chains.get(chain)
        if entry is None:
            raise PolicyError(f'{where}: chain {chain} has no [chains."{chain}"] entry (fee caps)')
        if "SWEEP" in m.purposes and entry.treasury is None:
            raise PolicyError(f"{where}: allows SWEEP on {chain}, which has no treasury")
        if "GAS_FUNDING" in m.purposes and entry.gas_funding_max == 0:
            raise PolicyError(f"{where}: allows GAS_FUNDING on {chain} without gas_funding_max")
        if "NONCE_FILL" in m.purposes and not chain.startswith("eip155:"):
            raise PolicyError(f"{where}: NONCE_FILL is for EVM chains (nonces), not {chain}")
    for asset in sorted(m.assets):
        if chain_of_asset(asset) not in m.chains:
            raise PolicyError(f"{where}: asset {asset} is not on the rule's chains")
        if asset not in policy.tx_caps:
            raise PolicyError(
                f'{where}: asset {asset} has no cap in [caps] (allow without cap; "{UNLIMITED}" '
                "is the explicit way out)"
            )
        if "GAS_FUNDING" in m.purposes and asset != native_asset(chain_of_asset(asset)):
            raise PolicyError(f"{where}: GAS_FUNDING moves only the native coin, not {asset}")
        if "NONCE_FILL" in m.purposes and asset != native_asset(chain_of_asset(asset)):
            raise PolicyError(f"{where}: NONCE_FILL is a native transfer of 0, not {asset}")
    if "SWEEP" in m.purposes and not all(is_hd_pattern(p) for p in m.key_ids):
        raise PolicyError(f"{where}: SWEEP is signed only by deposit keys hd:<index> or hd:*")
    if m.purposes - {"SWEEP"} and any(is_hd_pattern(p) for p in m.key_ids):
        # It could never allow anything: deposit keys only ever sweep.
        raise PolicyError(f"{where}: deposit keys (hd:…) sign only SWEEP")
    hot_patterns = [p for p in m.key_ids if not is_hd_pattern(p)]
    moved = sorted(m.assets | {native_asset(c) for c in m.chains})  # fees are native
    for pattern in hot_patterns:
        for asset in moved:
            if not any(
                v.asset == asset and pattern_covers(v.key_id, pattern) for v in policy.velocity
            ):
                raise PolicyError(
                    f"{where}: hot key {pattern!r} moves {asset} without a [[velocity]] cap "
                    "(fees count toward the native coin)"
                )


def _covers(outer: Match, inner: Match) -> bool:
    """Every request inner matches, outer matches too (conservatively: field by field)."""

    def subset(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
        return a is None or (b is not None and b <= a)

    return (
        subset(outer.caller_roles, inner.caller_roles)
        and subset(outer.purposes, inner.purposes)
        and subset(outer.chains, inner.chains)
        and subset(outer.assets, inner.assets)
        and (
            outer.key_ids is None
            or (
                inner.key_ids is not None
                and all(any(pattern_covers(o, i) for o in outer.key_ids) for i in inner.key_ids)
            )
        )
        and (outer.destination_in is None or outer.destination_in == inner.destination_in)
        and (
            outer.destination_not_in is None or outer.destination_not_in == inner.destination_not_in
        )
        and (
            outer.amount_above is None
            or (inner.amount_above is not None and inner.amount_above >= outer.amount_above)
        )
        and (
            outer.amount_below is None
            or (inner.amount_below is not None and inner.amount_below <= outer.amount_below)
        )
    )


def _check_shadowing(rules: tuple[Rule, ...]) -> None:
    for j, later in enumerate(rules):
        for earlier in rules[:j]:
            if _covers(earlier.match, later.match):
                raise PolicyError(
                    f"rule {later.name!r} is shadowed by the earlier rule {earlier.name!r} "
                    "(it can never match)"
                )
