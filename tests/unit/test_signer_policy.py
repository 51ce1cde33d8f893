"""The policy file and the one decision function: examples of each outcome, and properties —
implicit deny, first match wins, caps never exceeded over any sequence, approvals never lift a cap."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.policy.decide import Facts, applicable_caps, decide
from signer.policy.model import Policy, PolicyError, VelocityCap, parse_policy

ETH = "eip155:1/slip44:60"
USDC = "eip155:1/erc20:0x" + "cd" * 20
PAYEE = "0x" + "aa" * 20
STRANGER = "0x" + "bb" * 20

POLICY = f"""
version = 1
[allowlists]
payees = ["{PAYEE.upper().replace("0X", "0x")}"]

[caps]
"{ETH}" = "1000"
"{USDC}" = 5000

[[velocity]]
key_id = "hot-1"
asset = "{ETH}"
max_amount = "2500"

[[rules]]
name = "sweeps"
purpose = "SWEEP"
key_id = "hd:*"
action = "allow"

[[rules]]
name = "only payees"
destination_not_in = "payees"
purpose = ["PAYOUT", "REFUND"]
action = "block"

[[rules]]
name = "big payouts"
caller_role = "payments"
amount_above = "500"
action = "require_approvals"
approvers = ["alice", "bob", "carol"]
threshold = 2

[[rules]]
name = "payouts"
caller_role = "payments"
purpose = ["PAYOUT", "REFUND"]
key_id = "hot-1"
action = "allow"

[[rules]]
name = "no gas funding from payments"
purpose = "GAS_FUNDING"
action = "block"
""".encode()


def facts(**over: object) -> Facts:
    base = Facts(
        caller_role="payments",
        key_id="hot-1",
        purpose="PAYOUT",
        asset=ETH,
        destination=PAYEE,
        amount=100,
        approvers=frozenset(),
    )
    return replace(base, **over)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, frozenset({"alice", "bob", "carol"}))


def unused(policy: Policy, f: Facts) -> dict[VelocityCap, int]:
    return dict.fromkeys(applicable_caps(policy, f), 0)


@pytest.mark.parametrize(
    ("over", "used", "reason", "rule"),
    [
        ({}, 0, "ALLOWED", "payouts"),
        ({"key_id": "hd:7", "purpose": "SWEEP", "destination": STRANGER}, 0, "ALLOWED", "sweeps"),
        ({"destination": STRANGER}, 0, "DESTINATION_NOT_ALLOWED", "only payees"),
        ({"amount": 1001}, 0, "OVER_TX_CAP", "big payouts"),
        (
            {"amount": 1001, "approvers": frozenset({"alice", "bob"})},
            0,
            "OVER_TX_CAP",
            "big payouts",
        ),
        ({"amount": 600}, 0, "APPROVALS_REQUIRED", "big payouts"),
        (
            {"amount": 600, "approvers": frozenset({"alice"})},
            0,
            "APPROVALS_REQUIRED",
            "big payouts",
        ),
        (
            {"amount": 600, "approvers": frozenset({"alice", "mallory"})},
            0,
            "APPROVALS_REQUIRED",
            "big payouts",
        ),
        ({"amount": 600, "approvers": frozenset({"alice", "carol"})}, 0, "ALLOWED", "big payouts"),
        ({}, 2401, "OVER_VELOCITY_CAP", "payouts"),
        ({}, 2400, "ALLOWED", "payouts"),
        ({"purpose": "GAS_FUNDING"}, 0, "POLICY_BLOCKED", "no gas funding from payments"),
        ({"caller_role": "ops"}, 0, "POLICY_NO_MATCH", None),
        ({"key_id": "hot-2"}, 0, "POLICY_NO_MATCH", None),
    ],
)
def test_examples(
    policy: Policy, over: dict[str, object], used: int, reason: str, rule: str | None
) -> None:
    f = facts(**over)
    decision = decide(f, policy, dict.fromkeys(applicable_caps(policy, f), used))
    assert (decision.reason, decision.rule) == (reason, rule)
    assert decision.allowed == (reason == "ALLOWED")
    assert decision.policy_hash == policy.hash


def test_approvals_required_says_who_and_how_many(policy: Policy) -> None:
    f = facts(amount=600, approvers=frozenset({"bob"}))
    decision = decide(f, policy, unused(policy, f))
    assert decision.metadata == {
        "rule": "big payouts",
        "approvers": "alice,bob,carol",
        "threshold": "2",
        "have": "1",
    }


def test_a_velocity_cap_not_looked_up_counts_as_used(policy: Policy) -> None:
    assert decide(facts(), policy, {}).reason == "OVER_VELOCITY_CAP"


def test_policy_hash_is_sha256_of_the_bytes(policy: Policy) -> None:
    import hashlib

    assert policy.hash == hashlib.sha256(POLICY).hexdigest()
    assert parse_policy(POLICY + b"\n").hash != policy.hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[[rules]]\nname='a'\naction='allow'\nthreshhold=1\n", "unknown key"),
        (b"[[rules]]\nname='a'\naction='permit'\n", "action"),
        (
            b"[[rules]]\nname='a'\naction='require_approvals'\napprovers=['x']\nthreshold=2\n",
            "threshold",
        ),
        (
            b"[[rules]]\nname='a'\naction='require_approvals'\napprovers=['zed']\nthreshold=1\n",
            "not configured",
        ),
        (b"[[rules]]\nname='a'\naction='allow'\ndestination_in='nope'\n", "names no allowlist"),
        (b"[[rules]]\nname='a'\naction='allow'\npurpose='PAYDAY'\n", "purpose"),
        (b"[[rules]]\nname='a'\naction='allow'\n[[rules]]\nname='a'\naction='block'\n", "unique"),
        (b"[caps]\n'x' = -1\n", "caps.x"),
        (b"[caps]\n'x' = 1.5\n", "caps.x"),
        (b"[allowlists]\np = ['0x12']\n", "not a 0x address"),
        (b"[[velocity]]\nkey_id='k'\nasset='a'\nmax_amount=1\nwindow_s=0\n", "window_s"),
        (b"version = 2\n", "version"),
        (b"rules = [", "TOML"),
    ],
)
def test_bad_policies_are_refused(text: bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text, frozenset({"x"}))


# -- properties

roles = st.sampled_from(["payments", "ops"])
keys = st.sampled_from(["hot-1", "hot-2", "hd:1"])
purposes = st.sampled_from(["PAYOUT", "REFUND", "SWEEP", "GAS_FUNDING"])
assets = st.sampled_from([ETH, USDC])
destinations = st.sampled_from([PAYEE, STRANGER])
amounts = st.integers(min_value=1, max_value=3000)
approver_sets = st.frozensets(st.sampled_from(["alice", "bob", "carol"]))
any_facts = st.builds(
    Facts,
    caller_role=roles,
    key_id=keys,
    purpose=purposes,
    asset=assets,
    destination=destinations,
    amount=amounts,
    approvers=approver_sets,
)


@st.composite
def rule_texts(draw: st.DrawFn, name: str) -> str:
    lines = [f'[[rules]]\nname = "{name}"']
    if draw(st.booleans()):
        lines.append(f'caller_role = "{draw(roles)}"')
    if draw(st.booleans()):
        lines.append(f'key_id = "{draw(st.sampled_from(["hot-1", "hd:*", "*"]))}"')
    if draw(st.booleans()):
        lines.append(f'purpose = "{draw(purposes)}"')
    if draw(st.booleans()):
        lines.append(f'asset = "{draw(assets)}"')
    if draw(st.booleans()):
        lines.append(f'destination_{draw(st.sampled_from(["in", "not_in"]))} = "payees"')
    if draw(st.booleans()):
        lines.append(f"amount_above = {draw(amounts)}")
    if draw(st.booleans()):
        lines.append(f"amount_below = {draw(amounts)}")
    action = draw(st.sampled_from(["allow", "block", "require_approvals"]))
    lines.append(f'action = "{action}"')
    if action == "require_approvals":
        lines.append(
            f'approvers = ["alice", "bob", "carol"]\nthreshold = {draw(st.integers(1, 3))}'
        )
    return "\n".join(lines) + "\n"


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    head = f'[allowlists]\npayees = ["{PAYEE}"]\n'
    if draw(st.booleans()):
        head += f'[caps]\n"{ETH}" = {draw(amounts)}\n'
    for i in range(draw(st.integers(0, 2))):
        head += (
            f'[[velocity]]\nkey_id = "{draw(st.sampled_from(["hot-1", "*"]))}"\n'
            f'asset = "{draw(assets)}"\nmax_amount = {draw(amounts)}\n'
            f"window_s = {draw(st.sampled_from([10, 100]))}\n"
        )
        del i
    rules = [draw(rule_texts(f"r{i}")) for i in range(draw(st.integers(0, 4)))]
    return parse_policy((head + "".join(rules)).encode())


@given(any_facts, st.integers(0, 5000))
def test_implicit_deny(f: Facts, used: int) -> None:
    empty = parse_policy(b'[caps]\n"x" = 1\n')
    assert decide(f, empty, {}).reason == "POLICY_NO_MATCH"


@given(policies(), any_facts)
def test_first_match_wins(policy: Policy, f: Facts) -> None:
    """The decision is the one the first matching rule alone would make."""
    velocity = unused(policy, f)
    decision = decide(f, policy, velocity)
    matching = [
        r
        for r in policy.rules
        if decide(f, replace(policy, rules=(r,)), velocity).reason != "POLICY_NO_MATCH"
    ]
    if not matching:
        assert decision.reason == "POLICY_NO_MATCH" and not decision.allowed
    else:
        alone = decide(f, replace(policy, rules=(matching[0],)), velocity)
        assert (decision.reason, decision.rule) == (alone.reason, alone.rule)


@given(policies(), any_facts)
def test_a_block_rule_in_front_blocks_everything(policy: Policy, f: Facts) -> None:
    blocked = parse_policy(b'[[rules]]\nname = "stop"\naction = "block"\n')
    stopped = replace(policy, rules=blocked.rules + policy.rules)
    assert decide(f, stopped, unused(policy, f)).reason == "POLICY_BLOCKED"


@settings(max_examples=200)
@given(policies(), st.lists(st.tuples(any_facts, st.integers(0, 30)), max_size=40))
def test_caps_never_exceeded_over_any_sequence(
    policy: Policy, requests: list[tuple[Facts, int]]
) -> None:
    """Replaying a sequence against a model of the velocity store: every allowed amount is
    within the per-transaction cap, and for every cap every window holds at most its maximum."""
    now = 0
    signed: list[tuple[int, Facts]] = []
    for f, step in requests:
        now += step
        used = {
            cap: sum(
                s.amount
                for t, s in signed
                if s.key_id == f.key_id and s.asset == cap.asset and t > now - cap.window_s
            )
            for cap in applicable_caps(policy, f)
        }
        decision = decide(f, policy, used)
        if decision.allowed:
            tx_cap = policy.tx_caps.get(f.asset)
            assert tx_cap is None or f.amount <= tx_cap
            signed.append((now, f))
    for cap in policy.velocity:
        for end, _ in signed:
            for key in {s.key_id for _, s in signed}:
                if not (cap.key_id == "*" or cap.key_id == key):
                    continue
                window = sum(
                    s.amount
                    for t, s in signed
                    if s.key_id == key and s.asset == cap.asset and end - cap.window_s < t <= end
                )
                assert window <= cap.max_amount


@given(policies(), any_facts, approver_sets)
def test_more_approvals_never_turn_a_cap_refusal_into_an_allow(
    policy: Policy, f: Facts, extra: frozenset[str]
) -> None:
    velocity = unused(policy, f)
    before = decide(f, policy, velocity)
    after = decide(replace(f, approvers=f.approvers | extra), policy, velocity)
    if before.reason in {
        "OVER_TX_CAP",
        "OVER_VELOCITY_CAP",
        "POLICY_BLOCKED",
        "DESTINATION_NOT_ALLOWED",
        "POLICY_NO_MATCH",
    }:
        assert after.reason == before.reason
    if before.allowed:
        assert after.allowed
