"""The signing decision: one pure function over (request facts, policy, velocity used).

Everything that decides whether a key signs is here and nowhere else; the
pipeline only gathers facts and carries the decision out. The order is data:
STEPS, one named check after another, the first refusal wins. The normative
description is docs/threat-model.md, "Signer policy: evaluation order":

  chain    the chain has a [chains] entry                 CHAIN_NOT_CONFIGURED
  purpose  the purpose's shape, from the signer's own     PURPOSE_KEY_MISMATCH,
           configuration and HD seed                      SWEEP_NOT_TO_TREASURY,
                                                          GAS_FUNDING_NOT_NATIVE,
                                                          GAS_FUNDING_DESTINATION_MISMATCH,
                                                          OVER_GAS_FUNDING_CAP,
                                                          NONCE_FILL_NOT_EVM,
                                                          NONCE_FILL_HAS_DATA,
                                                          NONCE_FILL_VALUE_NOT_ZERO,
                                                          NONCE_FILL_NOT_TO_SELF
  rule     first matching rule (none: implicit deny)      POLICY_NO_MATCH, POLICY_BLOCKED,
           and block rules                                DESTINATION_NOT_ALLOWED
  fees     per-chain caps on fee per gas, gas, total fee  FEE_OVER_CAP
           (TRON: on fee_limit and the total fee)
  tx_cap   the asset's per-transaction cap                OVER_TX_CAP
  velocity every velocity cap on every asset moved        OVER_VELOCITY_CAP
           (the fee counts toward the native coin)
  approvals the rule's approvers and threshold            APPROVALS_REQUIRED

Caps come before approvals so that no number of approvers can lift a cap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from signer.envelope.validity import hd_index
from signer.policy.model import Policy, Rule, VelocityCap, key_matches, native_asset

ALLOWED = "ALLOWED"
CHAIN_NOT_CONFIGURED = "CHAIN_NOT_CONFIGURED"
PURPOSE_KEY_MISMATCH = "PURPOSE_KEY_MISMATCH"
SWEEP_NOT_TO_TREASURY = "SWEEP_NOT_TO_TREASURY"
GAS_FUNDING_NOT_NATIVE = "GAS_FUNDING_NOT_NATIVE"
GAS_FUNDING_DESTINATION_MISMATCH = "GAS_FUNDING_DESTINATION_MISMATCH"
OVER_GAS_FUNDING_CAP = "OVER_GAS_FUNDING_CAP"
NONCE_FILL_NOT_EVM = "NONCE_FILL_NOT_EVM"
NONCE_FILL_HAS_DATA = "NONCE_FILL_HAS_DATA"
NONCE_FILL_VALUE_NOT_ZERO = "NONCE_FILL_VALUE_NOT_ZERO"
NONCE_FILL_NOT_TO_SELF = "NONCE_FILL_NOT_TO_SELF"
POLICY_NO_MATCH = "POLICY_NO_MATCH"
POLICY_BLOCKED = "POLICY_BLOCKED"
DESTINATION_NOT_ALLOWED = "DESTINATION_NOT_ALLOWED"
FEE_OVER_CAP = "FEE_OVER_CAP"
OVER_TX_CAP = "OVER_TX_CAP"
OVER_VELOCITY_CAP = "OVER_VELOCITY_CAP"
APPROVALS_REQUIRED = "APPROVALS_REQUIRED"


@dataclass(frozen=True)
class Fee:
    """The decoded transaction's fee fields. EVM: gas and fee_per_gas (maxFeePerGas or
    gasPrice). TRON: fee_limit (raw_data.fee_limit, the most a contract call's energy burns)
    and burn (the decoder's bound on bandwidth and account creation, which fee_limit does not
    cover)."""

    gas: int = 0
    fee_per_gas: int = 0
    priority_fee_per_gas: int = 0
    fee_limit: int | None = None
    burn: int = 0

    @property
    def total(self) -> int:
        """The most the transaction can cost its sender in the native coin."""
        if self.fee_limit is not None:
            return self.fee_limit + self.burn
        return self.gas * self.fee_per_gas

    def summary(self) -> dict[str, str]:
        if self.fee_limit is not None:
            return {"fee_limit": str(self.fee_limit), "max_total_fee": str(self.total)}
        return {
            "gas": str(self.gas),
            "max_fee_per_gas": str(self.fee_per_gas),
            "max_priority_fee_per_gas": str(self.priority_fee_per_gas),
            "max_total_fee": str(self.total),
        }


@dataclass(frozen=True)
class Facts:
    caller_role: str
    key_id: str
    purpose: str
    asset: str
    destination: str  # lowercase 0x address; TRON: base58check
    amount: int
    approvers: frozenset[str]  # approvers whose signatures over this body verified
    chain: str = "eip155:1"
    fee: Fee = Fee()
    # GAS_FUNDING: the address the signer derived from its own HD seed for the index the
    # caller named (None: no index named, or no seed).
    derived_destination: str | None = None
    # NONCE_FILL: the signing key's own address, from its public key in the token (None: no
    # such hot key). The only destination a nonce fill may have; never taken from the caller.
    key_address: str | None = None
    # Bytes of calldata the transaction carries (an ERC-20 transfer's 68; 0 for a plain
    # native transfer).
    data_bytes: int = 0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    policy_hash: str
    rule: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def movements(facts: Facts) -> dict[str, int]:
    """What leaves the key per asset: the amount, and the most the fee can cost."""
    out = {facts.asset: facts.amount}
    native = native_asset(facts.chain)
    out[native] = out.get(native, 0) + facts.fee.total
    return out


def applicable_caps(policy: Policy, facts: Facts) -> tuple[VelocityCap, ...]:
    """The velocity caps whose used amount the decision needs (this key, every asset moved)."""
    moved = movements(facts)
    return tuple(
        c for c in policy.velocity if c.asset in moved and key_matches(c.key_id, facts.key_id)
    )


def rule_matches(rule: Rule, facts: Facts, policy: Policy) -> bool:
    m = rule.match
    return (
        (m.caller_roles is None or facts.caller_role in m.caller_roles)
        and (m.key_ids is None or any(key_matches(p, facts.key_id) for p in m.key_ids))
        and (m.purposes is None or facts.purpose in m.purposes)
        and (m.chains is None or facts.chain in m.chains)
        and (m.assets is None or facts.asset in m.assets)
        and (m.destination_in is None or facts.destination in policy.allowlists[m.destination_in])
        and (
            m.destination_not_in is None
            or facts.destination not in policy.allowlists[m.destination_not_in]
        )
        and (m.amount_above is None or facts.amount > m.amount_above)
        and (m.amount_below is None or facts.amount < m.amount_below)
    )


@dataclass
class _State:
    facts: Facts
    policy: Policy
    used: Mapping[VelocityCap, int]
    rule: Rule | None = None

    def refuse(self, reason: str, **metadata: str) -> Decision:
        if self.rule is not None:
            metadata = {"rule": self.rule.name, **metadata}
        return Decision(
            False, reason, self.policy.hash, None if self.rule is None else self.rule.name, metadata
        )


def _chain(s: _State) -> Decision | None:
    if s.facts.chain not in s.policy.chains:
        return s.refuse(CHAIN_NOT_CONFIGURED, chain=s.facts.chain)
    return None


def _purpose(s: _State) -> Decision | None:
    """A purpose is a claim: checked against the key kind and the signer's own knowledge."""
    f = s.facts
    chain = s.policy.chains[f.chain]
    from_hd = hd_index(f.key_id) is not None
    if f.purpose == "SWEEP":
        if not from_hd:
            return s.refuse(PURPOSE_KEY_MISMATCH, purpose=f.purpose, key_id=f.key_id)
        if chain.treasury is None or f.destination != chain.treasury:
            return s.refuse(
                SWEEP_NOT_TO_TREASURY, destination=f.destination, treasury=chain.treasury or ""
            )
        return None
    if from_hd:  # deposit keys only ever sweep
        return s.refuse(PURPOSE_KEY_MISMATCH, purpose=f.purpose, key_id=f.key_id)
    if f.purpose == "GAS_FUNDING":
        if f.asset != chain.native_asset:
            return s.refuse(GAS_FUNDING_NOT_NATIVE, asset=f.asset)
        if f.derived_destination is None or f.destination != f.derived_destination:
            return s.refuse(
                GAS_FUNDING_DESTINATION_MISMATCH,
                destination=f.destination,
                derived=f.derived_destination or "",
            )
        if f.amount > chain.gas_funding_max:
            return s.refuse(
                OVER_GAS_FUNDING_CAP, cap=str(chain.gas_funding_max), amount=str(f.amount)
            )
    if f.purpose == "NONCE_FILL":
        return _nonce_fill(s)
    return None


def _nonce_fill(s: _State) -> Decision | None:
    """A nonce fill moves nothing: value 0, no calldata, to the key's own address. Its only
    cost is its fee, which the fee caps and the native velocity cap bound like any other."""
    f = s.facts
    if not f.chain.startswith("eip155:"):
        return s.refuse(NONCE_FILL_NOT_EVM, chain=f.chain)
    if f.data_bytes or f.asset != native_asset(f.chain):
        return s.refuse(NONCE_FILL_HAS_DATA, data_bytes=str(f.data_bytes), asset=f.asset)
    if f.amount != 0:
        return s.refuse(NONCE_FILL_VALUE_NOT_ZERO, amount=str(f.amount))
    if f.key_address is None or f.destination != f.key_address:
        return s.refuse(
            NONCE_FILL_NOT_TO_SELF, destination=f.destination, key_address=f.key_address or ""
        )
    return None


def _rule(s: _State) -> Decision | None:
    s.rule = next((r for r in s.policy.rules if rule_matches(r, s.facts, s.policy)), None)
    if s.rule is None:
        return s.refuse(POLICY_NO_MATCH)
    if s.rule.action == "block":
        if s.rule.match.destination_not_in is not None:
            return s.refuse(DESTINATION_NOT_ALLOWED, allowlist=s.rule.match.destination_not_in)
        return s.refuse(POLICY_BLOCKED)
    return None


def _fees(s: _State) -> Decision | None:
    chain, fee = s.policy.chains[s.facts.chain], s.facts.fee
    checks = (
        (
            ("fee_limit", fee.fee_limit, chain.max_fee_limit),
            ("max_total_fee", fee.total, chain.max_total_fee),
        )
        if fee.fee_limit is not None
        else (
            ("max_fee_per_gas", fee.fee_per_gas, chain.max_fee_per_gas),
            ("gas", fee.gas, chain.max_gas),
            ("max_total_fee", fee.total, chain.max_total_fee),
        )
    )
    for name, value, cap in checks:
        if value > cap:
            return s.refuse(FEE_OVER_CAP, fee_field=name, cap=str(cap), value=str(value))
    return None


def _tx_cap(s: _State) -> Decision | None:
    # Load-time checks guarantee an allowing rule's assets are in tx_caps (None: "unlimited").
    assert s.facts.asset in s.policy.tx_caps, "an allowing rule names an uncapped asset"
    cap = s.policy.tx_caps[s.facts.asset]
    if cap is not None and s.facts.amount > cap:
        return s.refuse(OVER_TX_CAP, cap=str(cap), amount=str(s.facts.amount))
    return None


def _velocity(s: _State) -> Decision | None:
    moved = movements(s.facts)
    for cap in applicable_caps(s.policy, s.facts):
        used = s.used.get(cap)
        if used is None or used + moved[cap.asset] > cap.max_amount:
            return s.refuse(
                OVER_VELOCITY_CAP,
                cap=str(cap.max_amount),
                cap_key_id=cap.key_id,
                cap_asset=cap.asset,
                window_s=str(cap.window_s),
                used=str(used),
                amount=str(moved[cap.asset]),
            )
    return None


def _approvals(s: _State) -> Decision | None:
    assert s.rule is not None
    if s.rule.action == "require_approvals":
        have = s.rule.approvers & s.facts.approvers
        if len(have) < s.rule.threshold:
            return s.refuse(
                APPROVALS_REQUIRED,
                approvers=",".join(sorted(s.rule.approvers)),
                threshold=str(s.rule.threshold),
                have=str(len(have)),
            )
    return None


Step = Callable[[_State], Decision | None]
# The checks, in the order they run; each names the reasons it can give (tests hold both).
STEPS: tuple[tuple[str, Step, tuple[str, ...]], ...] = (
    ("chain", _chain, (CHAIN_NOT_CONFIGURED,)),
    (
        "purpose",
        _purpose,
        (
            PURPOSE_KEY_MISMATCH,
            SWEEP_NOT_TO_TREASURY,
            GAS_FUNDING_NOT_NATIVE,
            GAS_FUNDING_DESTINATION_MISMATCH,
            OVER_GAS_FUNDING_CAP,
            NONCE_FILL_NOT_EVM,
            NONCE_FILL_HAS_DATA,
            NONCE_FILL_VALUE_NOT_ZERO,
            NONCE_FILL_NOT_TO_SELF,
        ),
    ),
    ("rule", _rule, (POLICY_NO_MATCH, POLICY_BLOCKED, DESTINATION_NOT_ALLOWED)),
    ("fees", _fees, (FEE_OVER_CAP,)),
    ("tx_cap", _tx_cap, (OVER_TX_CAP,)),
    ("velocity", _velocity, (OVER_VELOCITY_CAP,)),
    ("approvals", _approvals, (APPROVALS_REQUIRED,)),
)
REASONS: tuple[str, ...] = tuple(r for _, _, reasons in STEPS for r in reasons)


def decide(facts: Facts, policy: Policy, velocity_used: Mapping[VelocityCap, int]) -> Decision:
    """velocity_used: for each cap in applicable_caps(policy, facts), the amount already
    signed in its bucket within its window (a missing cap counts as fully used, so forgetting
    to look one up refuses rather than allows)."""
    state = _State(facts, policy, velocity_used)
    for name, step, reasons in STEPS:
        refused = step(state)
        if refused is not None:
            assert refused.reason in reasons, (name, refused.reason)
            return refused
    rule = state.rule
    assert rule is not None and rule.action != "block"
    metadata = {"rule": rule.name}
    if rule.action == "require_approvals":
        metadata["approved_by"] = ",".join(sorted(rule.approvers & facts.approvers))
    return Decision(True, ALLOWED, policy.hash, rule.name, metadata)
