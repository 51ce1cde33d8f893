"""Default deny at load, purpose shapes and fee caps at decision time, and the order of the
checks as data: every reason in the list can be produced, and a request that breaks several
checks gets the first one's reason."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer.api.reasons import CODES, PIPELINE
from signer.policy.decide import REASONS, STEPS, Facts, Fee, applicable_caps, decide
from signer.policy.model import PolicyError, eip55, parse_policy

ETH = "eip155:1/slip44:60"
TOKEN = "0x" + "cd" * 20
USDC = f"eip155:1/erc20:{TOKEN}"
PAYEE = "0x" + "aa" * 20
TREASURY = "0x" + "7a" * 20
DEPOSIT = "0x" + "d3" * 20

CHAIN = f"""
[chains."eip155:1"]
treasury = "{TREASURY}"
gas_funding_max = 300
max_fee_per_gas = 10
max_gas = 100
max_total_fee = 500
"""
CAPS = f'[caps]\n"{ETH}" = 1000\n"{USDC}" = 5000\n'
HOT_VELOCITY = "".join(
    f'[[velocity]]\nkey_id = "hot-1"\nasset = "{a}"\nmax_amount = 100000\n' for a in (ETH, USDC)
)
PAYOUTS = f"""
[[rules]]
name = "payouts"
key_id = "hot-1"
purpose = "PAYOUT"
chain = "eip155:1"
asset = ["{ETH}", "{USDC}"]
action = "allow"
"""

NONCE_FILLS = f"""
[[rules]]
name = "fills"
key_id = "hot-1"
purpose = "NONCE_FILL"
chain = "eip155:1"
asset = "{ETH}"
action = "allow"
"""
TRON = "tron:0x2b6653dc"
TRX = f"{TRON}/slip44:195"
TRON_CHAIN = f"""
[chains."{TRON}"]
max_fee_limit = 100
max_total_fee = 500
"""
HOT = "0x" + "40" * 20  # hot-1's own address, as the signer derives it from the token


def load(text: str) -> object:
    return parse_policy(text.encode(), frozenset({"alice", "bob"}))


def test_a_safe_policy_loads() -> None:
    load(CHAIN + CAPS + HOT_VELOCITY + PAYOUTS)
    load(CHAIN + CAPS + HOT_VELOCITY + NONCE_FILLS + PAYOUTS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # allow without a cap names the rule and the asset
        (CHAIN + f'[caps]\n"{ETH}" = 1\n' + HOT_VELOCITY + PAYOUTS, "rule 'payouts': asset"),
        (CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace('"PAYOUT"', '"PAYDAY"'), "purpose"),
        (CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace('chain = "eip155:1"\n', ""), "pin chain"),
        (CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace("asset = [", "#"), "pin asset"),
        (CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace('key_id = "hot-1"\n', ""), "pin key_id"),
        (CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace('purpose = "PAYOUT"\n', ""), "pin purpose"),
        # the chain the rule pins has no fee caps
        (CAPS + HOT_VELOCITY + PAYOUTS, "no \\[chains"),
        (CHAIN.replace("max_gas = 100\n", "") + CAPS + HOT_VELOCITY + PAYOUTS, "max_gas"),
        # a hot key moving an asset (or paying fees) without a velocity cap
        (
            CHAIN
            + CAPS
            + HOT_VELOCITY.split("[[velocity]]")[1].join(["[[velocity]]", ""])
            + PAYOUTS,
            "without a \\[\\[velocity\\]\\] cap",
        ),
        (CHAIN + CAPS + PAYOUTS, "without a \\[\\[velocity\\]\\] cap"),
        # a rule shadowed by an earlier one is named with the one shadowing it
        (
            CHAIN + CAPS + HOT_VELOCITY + PAYOUTS + PAYOUTS.replace('"payouts"', '"again"'),
            "rule 'again' is shadowed by the earlier rule 'payouts'",
        ),
        (
            CHAIN + CAPS + HOT_VELOCITY + '[[rules]]\nname = "stop"\naction = "block"\n' + PAYOUTS,
            "rule 'payouts' is shadowed",
        ),
        # purposes whose shape the rule cannot have
        (
            CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace('"PAYOUT"', '"SWEEP"'),
            "deposit keys",
        ),
        (
            CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace('"PAYOUT"', '"GAS_FUNDING"'),
            "only the native coin",
        ),
        (CHAIN + CAPS + PAYOUTS.replace('"hot-1"', '"hd:*"'), "sign only SWEEP"),
        # a nonce fill is a native transfer of 0 from a hot key on an EVM chain
        (
            CHAIN + CAPS + HOT_VELOCITY + PAYOUTS.replace('"PAYOUT"', '"NONCE_FILL"'),
            "NONCE_FILL is a native transfer of 0",
        ),
        (
            CHAIN
            + CAPS
            + PAYOUTS.replace('"PAYOUT"', '"NONCE_FILL"')
            .replace('"hot-1"', '"hd:*"')
            .replace(f', "{USDC}"', ""),
            "sign only SWEEP",
        ),
        (
            CHAIN
            + TRON_CHAIN
            + CAPS
            + f'"{TRX}" = 1000\n'
            + HOT_VELOCITY
            + f'[[velocity]]\nkey_id = "hot-1"\nasset = "{TRX}"\nmax_amount = 100000\n'
            + NONCE_FILLS.replace('"eip155:1"', f'"{TRON}"').replace(ETH, TRX),
            "NONCE_FILL is for EVM chains",
        ),
        (
            CHAIN + CAPS + HOT_VELOCITY + NONCE_FILLS.replace('chain = "eip155:1"\n', ""),
            "pin chain",
        ),
        (
            CHAIN + CAPS + HOT_VELOCITY + NONCE_FILLS.replace('key_id = "hot-1"\n', ""),
            "pin key_id",
        ),
        (
            CHAIN + CAPS + NONCE_FILLS,
            "without a \\[\\[velocity\\]\\] cap",
        ),
        (
            CHAIN.replace(f'treasury = "{TREASURY}"\n', "")
            + CAPS
            + PAYOUTS.replace('"PAYOUT"', '"SWEEP"').replace('"hot-1"', '"hd:*"'),
            "no treasury",
        ),
        # addresses: a wrong EIP-55 checksum is a load error, never a silent non-match
        (CHAIN + CAPS.replace(TOKEN, "0x" + "Cd" * 20) + HOT_VELOCITY + PAYOUTS, "EIP-55"),
        (CHAIN.replace(TREASURY, "0x" + "7A" * 19 + "7a"), "EIP-55"),
        (f'[allowlists]\np = ["{"0x" + "aB" * 20}"]\n', "EIP-55"),
    ],
)
def test_unsafe_policies_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load(text)


@given(st.binary(min_size=20, max_size=20), st.integers(0, 39))
def test_eip55_checksums_are_checked(raw: bytes, position: int) -> None:
    """A checksummed address loads (as its lowercase form); flipping the case of any one
    letter breaks the checksum and is a load error; all-lowercase and all-uppercase (no
    checksum claimed) load."""
    from signer.policy.model import canonical_address

    lower = "0x" + raw.hex()
    checksummed = eip55(lower)
    assert canonical_address(checksummed, "t") == lower
    assert canonical_address(lower, "t") == lower
    assert canonical_address("0x" + raw.hex().upper(), "t") == lower
    c = checksummed[2 + position]
    if c.isalpha():
        flipped = checksummed[: 2 + position] + c.swapcase() + checksummed[3 + position :]
        if flipped[2:] not in (lower[2:], lower[2:].upper()):
            with pytest.raises(PolicyError, match="EIP-55"):
                canonical_address(flipped, "t")


def test_a_known_eip55_address() -> None:
    # From EIP-55's test vectors.
    address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert eip55(address.lower()) == address


def test_checksummed_addresses_are_canonicalised_and_still_cap() -> None:
    """The original escape: an EIP-55 token address in the policy silently disabled its cap."""
    checksummed = eip55(TOKEN)
    assert checksummed != TOKEN
    policy = parse_policy(
        (CHAIN + CAPS + HOT_VELOCITY + PAYOUTS).replace(TOKEN, checksummed).encode()
    )
    f = Facts("payments", "hot-1", "PAYOUT", USDC, PAYEE, 5001, frozenset())
    assert decide(f, policy, dict.fromkeys(applicable_caps(policy, f), 0)).reason == "OVER_TX_CAP"


def test_unlimited_is_explicit() -> None:
    policy = parse_policy(
        (CHAIN + CAPS.replace("5000", '"unlimited"') + HOT_VELOCITY + PAYOUTS).encode()
    )
    assert policy.tx_caps[USDC] is None
    with pytest.raises(PolicyError, match="caps"):
        load(CHAIN + CAPS.replace("5000", '"Unlimited"') + HOT_VELOCITY + PAYOUTS)


def test_a_pattern_velocity_cap_is_one_bucket() -> None:
    policy = parse_policy(
        (
            CHAIN
            + CAPS
            + f'[[velocity]]\nkey_id = "hd:*"\nasset = "{USDC}"\nmax_amount = 10\n'
            + PAYOUTS.replace('"PAYOUT"', '"SWEEP"').replace('"hot-1"', '"hd:*"')
        ).encode()
    )
    caps = {
        key: applicable_caps(policy, Facts("x", key, "SWEEP", USDC, TREASURY, 1, frozenset()))
        for key in ("hd:1", "hd:2")
    }
    hd_cap = next(c for c in caps["hd:1"] if c.asset == USDC)
    assert hd_cap in caps["hd:2"] and hd_cap.bucket == "pattern:hd:*"


# -- the decision's steps, as data

POLICY = parse_policy(
    (
        CHAIN
        + TRON_CHAIN
        + CAPS
        + HOT_VELOCITY
        + f"""
[allowlists]
payees = ["{PAYEE}"]

[[rules]]
name = "sweeps"
key_id = "hd:*"
purpose = "SWEEP"
chain = "eip155:1"
asset = ["{ETH}", "{USDC}"]
action = "allow"

[[rules]]
name = "gas"
key_id = "hot-1"
purpose = "GAS_FUNDING"
chain = "eip155:1"
asset = "{ETH}"
action = "allow"

{NONCE_FILLS}
[[rules]]
name = "payees only"
purpose = "PAYOUT"
destination_not_in = "payees"
action = "block"

[[rules]]
name = "no refunds"
purpose = "REFUND"
action = "block"

[[rules]]
name = "big"
key_id = "hot-1"
purpose = "PAYOUT"
chain = "eip155:1"
asset = ["{ETH}", "{USDC}"]
amount_above = 500
action = "require_approvals"
approvers = ["alice", "bob"]
threshold = 2
"""
        + PAYOUTS
    ).encode(),
    frozenset({"alice", "bob"}),
)
OK = Facts("payments", "hot-1", "PAYOUT", ETH, PAYEE, 10, frozenset(), fee=Fee(21, 2, 1))
FILL = replace(OK, purpose="NONCE_FILL", destination=HOT, amount=0, key_address=HOT)

# One request per reason, breaking that check and nothing before it.
PRODUCE: dict[str, Facts] = {
    "CHAIN_NOT_CONFIGURED": replace(OK, chain="eip155:5"),
    "PURPOSE_KEY_MISMATCH": replace(OK, key_id="hd:3"),
    "SWEEP_NOT_TO_TREASURY": replace(OK, key_id="hd:3", purpose="SWEEP"),
    "GAS_FUNDING_NOT_NATIVE": replace(OK, purpose="GAS_FUNDING", asset=USDC),
    "GAS_FUNDING_DESTINATION_MISMATCH": replace(
        OK, purpose="GAS_FUNDING", destination=DEPOSIT, derived_destination=None
    ),
    "OVER_GAS_FUNDING_CAP": replace(
        OK, purpose="GAS_FUNDING", destination=DEPOSIT, derived_destination=DEPOSIT, amount=301
    ),
    "NONCE_FILL_NOT_EVM": replace(FILL, chain=TRON, asset=TRX),
    "NONCE_FILL_HAS_DATA": replace(FILL, asset=USDC, data_bytes=68),
    "NONCE_FILL_VALUE_NOT_ZERO": replace(FILL, amount=1),
    "NONCE_FILL_NOT_TO_SELF": replace(FILL, destination=PAYEE),
    "POLICY_NO_MATCH": replace(OK, key_id="hot-2"),
    "POLICY_BLOCKED": replace(OK, purpose="REFUND"),
    "DESTINATION_NOT_ALLOWED": replace(OK, destination=TREASURY),
    "FEE_OVER_CAP": replace(OK, fee=Fee(21, 11, 1)),
    "OVER_TX_CAP": replace(OK, amount=1001),
    "OVER_VELOCITY_CAP": replace(OK, amount=100),
    "APPROVALS_REQUIRED": replace(OK, amount=501),
}


def _decide(f: Facts, used: int = 0) -> str:
    velocity = dict.fromkeys(applicable_caps(POLICY, f), used)
    if f is PRODUCE["OVER_VELOCITY_CAP"]:
        velocity = dict.fromkeys(velocity, 99_950)
    return decide(f, POLICY, velocity).reason


def test_the_healthy_request_is_allowed() -> None:
    assert _decide(OK) == "ALLOWED"
    assert _decide(FILL) == "ALLOWED"


def test_a_nonce_fill_goes_only_to_the_address_the_signer_knows_for_the_key() -> None:
    """The key's own address comes from the token; without it (no such hot key) nothing is
    signed, and the caller's destination is never taken for it."""
    assert _decide(replace(FILL, key_address=None)) == "NONCE_FILL_NOT_TO_SELF"
    assert _decide(replace(FILL, destination=PAYEE, key_address=PAYEE)) == "ALLOWED"
    refused = decide(replace(FILL, destination=PAYEE), POLICY, {})
    assert refused.metadata == {"destination": PAYEE, "key_address": HOT}


def test_a_nonce_fill_fee_counts_toward_the_native_velocity_cap() -> None:
    fill = replace(FILL, fee=Fee(100, 5, 1))  # 500 wei: within max_total_fee
    caps = applicable_caps(POLICY, fill)
    assert {c.asset for c in caps} == {ETH}
    assert decide(fill, POLICY, dict.fromkeys(caps, 100_000 - 500)).allowed
    over = decide(fill, POLICY, dict.fromkeys(caps, 100_000 - 499))
    assert (over.reason, over.metadata["amount"]) == ("OVER_VELOCITY_CAP", "500")
    assert _decide(replace(FILL, fee=Fee(100, 11, 1))) == "FEE_OVER_CAP"
    assert _decide(replace(FILL, key_id="hd:3")) == "PURPOSE_KEY_MISMATCH"


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_in_the_list_can_be_produced(reason: str) -> None:
    assert _decide(PRODUCE[reason]) == reason


def test_the_steps_reasons_are_the_pipelines_in_the_same_order() -> None:
    """reasons.CODES (every reason a Sign call can end with, in pipeline order) holds the
    decision's reasons as one block, in the order of STEPS."""
    assert set(PRODUCE) == set(REASONS)
    codes = list(CODES)
    block = codes[codes.index(REASONS[0]) : codes.index(REASONS[0]) + len(REASONS)]
    assert tuple(block) == REASONS
    assert dict(PIPELINE)["policy"] == REASONS
    # CODES adds what key lookups (GetPublicKey, ListKeys) can end with.
    assert {r for _, reasons in PIPELINE for r in reasons} == set(CODES) - {"CALLER_NOT_ALLOWED"}
    assert [name for name, _, _ in STEPS] == [
        "chain",
        "purpose",
        "rule",
        "fees",
        "tx_cap",
        "velocity",
        "approvals",
    ]


@given(st.sets(st.sampled_from(["fee", "amount", "destination", "chain", "key"]), min_size=2))
def test_a_request_breaking_several_checks_gets_the_first_reason(broken: set[str]) -> None:
    f = OK
    if "fee" in broken:
        f = replace(f, fee=Fee(21, 11, 1))  # fees
    if "amount" in broken:
        f = replace(f, amount=1001)  # tx_cap (after approvals' rule match: "big")
    if "destination" in broken:
        f = replace(f, destination=TREASURY)  # rule: blocked
    if "chain" in broken:
        f = replace(f, chain="eip155:5")  # chain
    if "key" in broken:
        f = replace(f, key_id="hd:3")  # purpose
    order = [
        ("chain", "CHAIN_NOT_CONFIGURED"),
        ("key", "PURPOSE_KEY_MISMATCH"),
        ("destination", "DESTINATION_NOT_ALLOWED"),
        ("fee", "FEE_OVER_CAP"),
        ("amount", "OVER_TX_CAP"),
    ]
    first = next(reason for name, reason in order if name in broken)
    assert _decide(f) == first


def test_fees_count_toward_the_native_velocity_cap() -> None:
    f = replace(OK, asset=USDC, amount=1, fee=Fee(100, 5, 1))  # 500 wei of fee, in ETH
    caps = applicable_caps(POLICY, f)
    eth_cap = next(c for c in caps if c.asset == ETH)
    used = {c: 0 for c in caps} | {eth_cap: 100_000 - 499}
    assert decide(f, POLICY, used).reason == "OVER_VELOCITY_CAP"
    used[eth_cap] = 100_000 - 500
    assert decide(f, POLICY, used).allowed


def test_every_policy_example_in_the_docs_loads() -> None:
    """The docs' examples are safe starting policies: they pass the default-deny load checks."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    examples = [
        block
        for doc in ("hsm-runbook.md", "threat-model.md")
        for block in re.findall(r"```toml\n(.*?)```", (docs / doc).read_text(), re.S)
        if "[[rules]]" in block
    ]
    assert examples
    for example in examples:
        parse_policy(example.encode(), frozenset({"alice", "bob", "carol"}))


# Reasons no test here can produce, and why.
UNPRODUCIBLE = {
    # gRPC Python clients cannot be limited to TLS 1.2; the server-side check is covered by
    # signer/tls/server.py's interceptor and the pipeline's first step.
    "TLS_VERSION_REFUSED": "no TLS 1.2 gRPC client in Python",
}


def test_every_reason_a_sign_call_can_end_with_is_asserted_by_a_test() -> None:
    """reasons.CODES is the list of every reason; each one is the asserted outcome of a signer
    test (the decision's reasons here, the pipeline's in the integration tests), so a new
    reason cannot be added without a test that produces it."""
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    text = "".join(
        p.read_text()
        for p in [*tests.glob("integration/test_signer_*.py"), *tests.glob("unit/test_signer_*.py")]
        if p.name != Path(__file__).name
    ) + "".join(f'"{r}"' for r in PRODUCE)
    missing = [r for r in CODES if f'"{r}"' not in text and r not in UNPRODUCIBLE]
    assert missing == []
