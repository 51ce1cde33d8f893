"""The policy file and the one decision function: examples of each outcome, and properties —
implicit deny, first match wins, caps never exceeded over any sequence, approvals never lift a cap."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from signer.policy.decide import Facts, Fee, applicable_caps, decide, movements
from signer.policy.model import Policy, PolicyError, VelocityCap, key_matches, parse_policy

ETH = "eip155:1/slip44:60"
USDC = "eip155:1/erc20:0x" + "cd" * 20
PAYEE = "0x" + "aa" * 20
STRANGER = "0x" + "bb" * 20

TREASURY = "0x" + "7a" * 20
DEPOSIT_3 = "0x" + "d3" * 20  # stands for what the signer derives for hd index 3
HOT_ADDRESS = "0x" + "40" * 20  # stands for hot-1's own address, from its public key
CHAIN = f"""
[chains."eip155:1"]
treasury = "{TREASURY}"
gas_funding_max = 300
max_fee_per_gas = 10
max_gas = 100
max_total_fee = 500
"""

POLICY = f"""
version = 1
{CHAIN}
[allowlists]
payees = ["{PAYEE.upper().replace("0X", "0x")}"]

[caps]
"{ETH}" = "1000"
"{USDC}" = 5000

[[velocity]]
key_id = "hot-1"
asset = "{ETH}"
max_amount = "2500"

[[velocity]]
key_id = "hot-1"
asset = "{USDC}"
max_amount = "100000"

[[rules]]
name = "sweeps"
purpose = "SWEEP"
key_id = "hd:*"
chain = "eip155:1"
asset = ["{ETH}", "{USDC}"]
action = "allow"

[[rules]]
name = "only payees"
destination_not_in = "payees"
purpose = ["PAYOUT", "REFUND"]
action = "block"

[[rules]]
name = "big payouts"
caller_role = "payments"
key_id = "hot-1"
purpose = ["PAYOUT", "REFUND"]
chain = "eip155:1"
asset = ["{ETH}", "{USDC}"]
amount_above = "500"
action = "require_approvals"
approvers = ["alice", "bob", "carol"]
threshold = 2

[[rules]]
name = "payouts"
caller_role = "payments"
purpose = ["PAYOUT", "REFUND"]
key_id = "hot-1"
chain = "eip155:1"
asset = ["{ETH}", "{USDC}"]
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
        ({"key_id": "hd:7", "purpose": "SWEEP", "destination": TREASURY}, 0, "ALLOWED", "sweeps"),
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
        (
            {"purpose": "GAS_FUNDING", "destination": DEPOSIT_3, "derived_destination": DEPOSIT_3},
            0,
            "POLICY_BLOCKED",
            "no gas funding from payments",
        ),
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
keys = st.sampled_from(["hot-1", "hot-2", "hd:1", "hd:2"])
purposes = st.sampled_from(["PAYOUT", "REFUND", "SWEEP", "GAS_FUNDING", "NONCE_FILL"])
assets = st.sampled_from([ETH, USDC])
destinations = st.sampled_from([PAYEE, STRANGER, TREASURY, DEPOSIT_3])
amounts = st.integers(min_value=1, max_value=3000)
approver_sets = st.frozensets(st.sampled_from(["alice", "bob", "carol"]))
fees = st.builds(Fee, st.integers(0, 120), st.integers(0, 12), st.integers(0, 12))
any_facts = st.builds(
    Facts,
    caller_role=roles,
    key_id=keys,
    purpose=purposes,
    asset=assets,
    destination=destinations,
    amount=amounts,
    approvers=approver_sets,
    chain=st.sampled_from(["eip155:1", "eip155:1", "eip155:5"]),
    fee=fees,
    derived_destination=st.sampled_from([None, DEPOSIT_3]),
    key_address=st.sampled_from([None, HOT_ADDRESS, PAYEE]),
    data_bytes=st.sampled_from([0, 0, 68]),
)


@st.composite
def shaped_facts(draw: st.DrawFn) -> Facts:
    """Facts whose chain and purpose shape hold, so that the rules decide."""
    f = draw(any_facts)
    if f.key_id.startswith("hd:"):
        return replace(f, chain="eip155:1", purpose="SWEEP", destination=TREASURY)
    purpose = draw(st.sampled_from(["PAYOUT", "REFUND", "GAS_FUNDING", "NONCE_FILL"]))
    if purpose == "NONCE_FILL":
        return replace(
            f,
            chain="eip155:1",
            purpose=purpose,
            asset=ETH,
            destination=HOT_ADDRESS,
            key_address=HOT_ADDRESS,
            amount=0,
            data_bytes=0,
        )
    if purpose == "GAS_FUNDING":
        return replace(
            f,
            chain="eip155:1",
            purpose=purpose,
            asset=ETH,
            destination=DEPOSIT_3,
            derived_destination=DEPOSIT_3,
            amount=min(f.amount, 300),
        )
    return replace(f, chain="eip155:1", purpose=purpose)


@st.composite
def rule_texts(draw: st.DrawFn, name: str) -> str:
    lines = [f'[[rules]]\nname = "{name}"']
    action = draw(st.sampled_from(["allow", "block", "require_approvals"]))
    if draw(st.booleans()):
        lines.append(f'caller_role = "{draw(roles)}"')
    if action == "block":
        if draw(st.booleans()):
            lines.append(f'key_id = "{draw(st.sampled_from(["hot-1", "hd:*", "*"]))}"')
        if draw(st.booleans()):
            lines.append(f'purpose = "{draw(purposes)}"')
        if draw(st.booleans()):
            lines.append(f'asset = "{draw(assets)}"')
    else:
        # A rule that allows pins chain, key, purpose and asset, in a shape that can hold.
        lines.append('chain = "eip155:1"')
        key = draw(st.sampled_from(["hot-1", "hd:*"]))
        purpose = (
            "SWEEP"
            if key == "hd:*"
            else draw(st.sampled_from(["PAYOUT", "GAS_FUNDING", "NONCE_FILL"]))
        )
        lines.append(f'key_id = "{key}"\npurpose = "{purpose}"')
        asset = ETH if purpose in ("GAS_FUNDING", "NONCE_FILL") else draw(assets)
        lines.append(f'asset = "{asset}"')
    if draw(st.booleans()):
        lines.append(f'destination_{draw(st.sampled_from(["in", "not_in"]))} = "payees"')
    if draw(st.booleans()):
        lines.append(f"amount_above = {draw(amounts)}")
    if draw(st.booleans()):
        lines.append(f"amount_below = {draw(amounts)}")
    lines.append(f'action = "{action}"')
    if action == "require_approvals":
        lines.append(
            f'approvers = ["alice", "bob", "carol"]\nthreshold = {draw(st.integers(1, 3))}'
        )
    return "\n".join(lines) + "\n"


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    head = f'{CHAIN}[allowlists]\npayees = ["{PAYEE}"]\n'
    usdc_cap = draw(st.sampled_from(["100", '"unlimited"']))
    head += f'[caps]\n"{ETH}" = {draw(amounts)}\n"{USDC}" = {usdc_cap}\n'
    caps = [("hot-1", ETH), ("hot-1", USDC)]
    caps += draw(st.lists(st.sampled_from([("*", ETH), ("hd:*", ETH), ("hd:*", USDC)]), max_size=2))
    for key, asset in caps:
        head += (
            f'[[velocity]]\nkey_id = "{key}"\n'
            f'asset = "{asset}"\nmax_amount = {draw(amounts)}\n'
            f"window_s = {draw(st.sampled_from([10, 100]))}\n"
        )
    rules = [draw(rule_texts(f"r{i}")) for i in range(draw(st.integers(0, 4)))]
    try:
        return parse_policy((head + "".join(rules)).encode())
    except PolicyError as exc:
        assume("shadowed" not in str(exc))
        raise


@given(any_facts, st.integers(0, 5000))
def test_implicit_deny(f: Facts, used: int) -> None:
    empty = parse_policy(f'{CHAIN}[caps]\n"{ETH}" = 1\n'.encode())
    assert not decide(f, empty, {}).allowed


@given(shaped_facts(), st.integers(0, 5000))
def test_implicit_deny_is_no_match(f: Facts, used: int) -> None:
    empty = parse_policy(f'{CHAIN}[caps]\n"{ETH}" = 1\n'.encode())
    assert decide(f, empty, {}).reason == "POLICY_NO_MATCH"


@given(policies(), shaped_facts())
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


@given(policies(), shaped_facts())
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
    within the per-transaction and fee caps, and for every cap every window holds at most its
    maximum — summed over every key the cap names (a pattern is one bucket), fees included."""
    now = 0
    signed: list[tuple[int, Facts]] = []

    def in_bucket(cap: VelocityCap, start: float, end: float) -> int:
        return sum(
            movements(s).get(cap.asset, 0)
            for t, s in signed
            if key_matches(cap.key_id, s.key_id) and start < t <= end
        )

    for f, step in requests:
        now += step
        used = {cap: in_bucket(cap, now - cap.window_s, now) for cap in applicable_caps(policy, f)}
        decision = decide(f, policy, used)
        if decision.allowed:
            tx_cap = policy.tx_caps[f.asset]
            assert tx_cap is None or f.amount <= tx_cap
            chain = policy.chains[f.chain]
            assert f.fee.total <= chain.max_total_fee and f.fee.gas <= chain.max_gas
            assert f.fee.fee_per_gas <= chain.max_fee_per_gas
            signed.append((now, f))
    for cap in policy.velocity:
        for end, _ in signed:
            assert in_bucket(cap, end - cap.window_s, end) <= cap.max_amount


@given(policies(), any_facts)
def test_allowed_purposes_have_their_shape(policy: Policy, f: Facts) -> None:
    """Whatever the rules say, a SWEEP goes from a deposit key to the treasury, a gas funding
    from a hot key in the native coin to the derived address, a payout from a hot key."""
    if not decide(f, policy, unused(policy, f)).allowed:
        return
    from_hd = f.key_id.startswith("hd:")
    if f.purpose == "SWEEP":
        assert from_hd and f.destination == TREASURY
    else:
        assert not from_hd
    if f.purpose == "GAS_FUNDING":
        assert f.asset == ETH and f.destination == f.derived_destination and f.amount <= 300
    if f.purpose == "NONCE_FILL":
        # Moves nothing, to the key itself: only its fee leaves, within the caps.
        assert f.asset == ETH and f.amount == 0 and f.data_bytes == 0
        assert f.key_address is not None and f.destination == f.key_address


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
        "FEE_OVER_CAP",
        "CHAIN_NOT_CONFIGURED",
        "PURPOSE_KEY_MISMATCH",
        "SWEEP_NOT_TO_TREASURY",
        "GAS_FUNDING_DESTINATION_MISMATCH",
        "GAS_FUNDING_NOT_NATIVE",
        "OVER_GAS_FUNDING_CAP",
        "NONCE_FILL_NOT_EVM",
        "NONCE_FILL_HAS_DATA",
        "NONCE_FILL_VALUE_NOT_ZERO",
        "NONCE_FILL_NOT_TO_SELF",
    }:
        assert after.reason == before.reason
    if before.allowed:
        assert after.allowed
