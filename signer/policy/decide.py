"""The signing decision: one pure function over (request facts, policy, velocity used).

Everything that decides whether a key signs is here and nowhere else; the
servicer only gathers facts and carries the decision out. Order:
first matching rule (none: implicit deny) → block → per-transaction cap →
velocity caps → approvals → allow. Caps come before approvals so that no
number of approvers can lift a cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from signer.policy.model import Policy, Rule, VelocityCap, key_matches

ALLOWED = "ALLOWED"
POLICY_NO_MATCH = "POLICY_NO_MATCH"
POLICY_BLOCKED = "POLICY_BLOCKED"
DESTINATION_NOT_ALLOWED = "DESTINATION_NOT_ALLOWED"
OVER_TX_CAP = "OVER_TX_CAP"
OVER_VELOCITY_CAP = "OVER_VELOCITY_CAP"
APPROVALS_REQUIRED = "APPROVALS_REQUIRED"


@dataclass(frozen=True)
class Facts:
    caller_role: str
    key_id: str
    purpose: str
    asset: str
    destination: str  # lowercase 0x address
    amount: int
    approvers: frozenset[str]  # approvers whose signatures over this body verified


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    policy_hash: str
    rule: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def applicable_caps(policy: Policy, facts: Facts) -> tuple[VelocityCap, ...]:
    """The velocity caps whose used amount the decision needs (for this key and asset)."""
    return tuple(
        c for c in policy.velocity if c.asset == facts.asset and key_matches(c.key_id, facts.key_id)
    )


def rule_matches(rule: Rule, facts: Facts, policy: Policy) -> bool:
    m = rule.match
    return (
        (m.caller_roles is None or facts.caller_role in m.caller_roles)
        and (m.key_ids is None or any(key_matches(p, facts.key_id) for p in m.key_ids))
        and (m.purposes is None or facts.purpose in m.purposes)
        and (m.assets is None or facts.asset in m.assets)
        and (m.destination_in is None or facts.destination in policy.allowlists[m.destination_in])
        and (
            m.destination_not_in is None
            or facts.destination not in policy.allowlists[m.destination_not_in]
        )
        and (m.amount_above is None or facts.amount > m.amount_above)
        and (m.amount_below is None or facts.amount < m.amount_below)
    )


def decide(facts: Facts, policy: Policy, velocity_used: Mapping[VelocityCap, int]) -> Decision:
    """velocity_used: for each cap in applicable_caps(policy, facts), the amount of this
    key and asset already signed within the cap's window (a missing cap counts as fully used,
    so forgetting to look one up refuses rather than allows)."""
    rule = next((r for r in policy.rules if rule_matches(r, facts, policy)), None)
    if rule is None:
        return Decision(False, POLICY_NO_MATCH, policy.hash)

    def refuse(reason: str, **metadata: str) -> Decision:
        return Decision(False, reason, policy.hash, rule.name, {"rule": rule.name, **metadata})

    if rule.action == "block":
        if rule.match.destination_not_in is not None:
            return refuse(DESTINATION_NOT_ALLOWED, allowlist=rule.match.destination_not_in)
        return refuse(POLICY_BLOCKED)
    tx_cap = policy.tx_caps.get(facts.asset)
    if tx_cap is not None and facts.amount > tx_cap:
        return refuse(OVER_TX_CAP, cap=str(tx_cap), amount=str(facts.amount))
    for cap in applicable_caps(policy, facts):
        used = velocity_used.get(cap)
        if used is None or used + facts.amount > cap.max_amount:
            return refuse(
                OVER_VELOCITY_CAP,
                cap=str(cap.max_amount),
                window_s=str(cap.window_s),
                used=str(used),
                amount=str(facts.amount),
            )
    if rule.action == "require_approvals":
        have = rule.approvers & facts.approvers
        if len(have) < rule.threshold:
            return refuse(
                APPROVALS_REQUIRED,
                approvers=",".join(sorted(rule.approvers)),
                threshold=str(rule.threshold),
                have=str(len(have)),
            )
        return Decision(
            True,
            ALLOWED,
            policy.hash,
            rule.name,
            {"rule": rule.name, "approved_by": ",".join(sorted(have))},
        )
    return Decision(True, ALLOWED, policy.hash, rule.name, {"rule": rule.name})
