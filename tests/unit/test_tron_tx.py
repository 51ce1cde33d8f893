"""TRON raw_data decoding in the signer: what it accepts, what it refuses and why; the txid;
TRON intents; the policy's TRON chains, assets and fee caps. Pure logic (tronweb's reading of
the same bytes is in tests/integration/test_signer_tron.py)."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey
from eth_utils.abi import function_signature_to_4byte_selector
from hypothesis import given
from hypothesis import strategies as st

from signer.chains import tron_address, tron_tx
from signer.chains.decoded import decode
from signer.chains.evm_tx import TxDecodeError
from signer.chains.intent import IntentInvalid, mismatch, parse_intent
from signer.chains.transfer import Transfer, transfer_calldata
from signer.policy.decide import Facts, decide, movements
from signer.policy.model import PolicyError, parse_policy
from tests.support.tron_build import (
    MAINNET,
    NILE,
    TRX,
    USDT,
    USDT_CONTRACT,
    address,
    raw_data,
)

OWNER = address(0x11)
PAYEE = address(0x22)
M = tron_tx.message_class

# Official pairs: TRON's developer documentation (address format), Tether's USDT contract on
# TRONSCAN, and the zero address.
VECTORS = [
    ("TNPeeaaFB7K9cmo4uQpcU32zGK8G1NYqeL", "418840e6c55b9ada326d211d818c34a994aeced808"),
    ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"),
    ("T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb", "410000000000000000000000000000000000000000"),
]


@pytest.mark.parametrize(("text", "hex_form"), VECTORS)
def test_official_address_vectors(text: str, hex_form: str) -> None:
    assert tron_address.to_bytes(text).hex() == hex_form
    assert tron_address.from_bytes(bytes.fromhex(hex_form)) == text
    assert tron_address.is_address(text)


def test_addresses_refused() -> None:
    good = VECTORS[0][0]
    assert not tron_address.is_address(good[:-1] + ("M" if good[-1] != "M" else "N"))
    assert not tron_address.is_address("0x" + "11" * 20)
    with pytest.raises(ValueError, match="0x41"):
        tron_address.from_bytes(b"\x42" + bytes(20))


def test_address_of_a_key_is_keccak_of_the_public_key() -> None:
    from signer.secp256k1 import keccak256

    key = PrivateKey(bytes.fromhex("11" * 32))
    public = key.public_key.format(compressed=False)
    expected = tron_address.from_bytes(b"\x41" + keccak256(public[1:])[-20:])
    assert tron_address.of_public_key(public) == expected
    assert tron_address.of_public_key(key.public_key.format()) == expected


amounts = st.integers(min_value=1, max_value=2**63 - 1)
fills = st.integers(min_value=0, max_value=255)


@given(fills, fills, amounts)
def test_trx_round_trip(owner: int, to: int, amount: int) -> None:
    raw = raw_data(address(owner), address(to), amount)
    tx = tron_tx.decode_raw_data(raw)
    assert (tx.kind, tx.owner, tx.to, tx.amount, tx.fee_limit) == (
        "trx",
        address(owner),
        address(to),
        amount,
        0,
    )
    assert tron_tx.transfer_of(tx) == Transfer(None, None, address(to), amount)
    assert tx.txid() == hashlib.sha256(raw).digest()


@given(fills, st.integers(min_value=0, max_value=2**256 - 1), st.integers(1, 2**63 - 1))
def test_trc20_round_trip(to: int, amount: int, fee_limit: int) -> None:
    raw = raw_data(OWNER, address(to), amount, USDT_CONTRACT, fee_limit)
    decoded = decode(MAINNET, raw)
    assert decoded.transfer == Transfer(None, USDT_CONTRACT, address(to), amount)
    assert decoded.owner == OWNER
    assert decoded.fee.fee_limit == fee_limit
    assert decoded.fee.total == fee_limit + tron_tx.BANDWIDTH_BURN_MAX_SUN
    assert decoded.tx_id == hashlib.sha256(raw).hexdigest()
    assert decoded.digest(raw) == hashlib.sha256(raw).digest()


def _with(raw: bytes, **changes: object) -> bytes:
    """raw_data with fields of Raw (or, prefixed contract_, of its one Contract) changed."""
    message = M("Raw").FromString(raw)
    for name, value in changes.items():
        if name.startswith("contract_"):
            setattr(message.contract[0], name.removeprefix("contract_"), value)
        elif name == "extra_contract":
            message.contract.append(message.contract[0])
        elif name == "auths":
            message.auths.add(permission_name=b"owner")
        else:
            setattr(message, name, value)
    return bytes(message.SerializeToString(deterministic=True))


def _param(raw: bytes, name: str, **fields: object) -> bytes:
    message = M("Raw").FromString(raw)
    value = M(name).FromString(message.contract[0].parameter.value)
    for field, v in fields.items():
        setattr(value, field, v)
    message.contract[0].parameter.value = value.SerializeToString(deterministic=True)
    return bytes(message.SerializeToString(deterministic=True))


TRX_RAW = raw_data(OWNER, PAYEE, 5_000_000)
USDT_RAW = raw_data(OWNER, PAYEE, 7_000_000, USDT_CONTRACT)
APPROVE = bytes(function_signature_to_4byte_selector("approve(address,uint256)"))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "empty"),
        (b"\xff\xff", "bad_protobuf"),
        (TRX_RAW + b"\xa8\x06\x01", "non_canonical"),  # an unknown field 101
        (TRX_RAW + TRX_RAW[:4], "non_canonical"),  # ref_block_bytes twice: last one wins
        (_with(TRX_RAW, extra_contract=True), "contract_count"),
        (_with(TRX_RAW, data=b"memo"), "unreviewed_field"),
        (_with(TRX_RAW, scripts=b"\x01"), "unreviewed_field"),
        (_with(TRX_RAW, auths=True), "unreviewed_field"),
        (_with(TRX_RAW, contract_Permission_id=2), "permission"),
        (_with(TRX_RAW, contract_provider=b"x"), "unreviewed_field"),
        (_with(TRX_RAW, contract_type=2), "unsupported_contract"),  # TransferAssetContract
        (_with(TRX_RAW, contract_type=31), "type_url"),  # says trigger, carries a transfer
        (_with(TRX_RAW, ref_block_hash=b"\x01"), "bad_field"),
        (_with(TRX_RAW, expiration=0), "bad_field"),
        (_with(TRX_RAW, fee_limit=1), "bad_field"),  # a fee_limit on TRX bounds nothing
        (_with(USDT_RAW, fee_limit=0), "bad_field"),
        (_with(USDT_RAW, fee_limit=-1), "bad_field"),
        (_param(TRX_RAW, "TransferContract", amount=-5), "bad_field"),
        (_param(TRX_RAW, "TransferContract", to_address=b"\x42" + bytes(20)), "bad_field"),
        (_param(TRX_RAW, "TransferContract", owner_address=bytes(20)), "bad_field"),
        (_param(USDT_RAW, "TriggerSmartContract", call_value=1), "value_with_call"),
        (_param(USDT_RAW, "TriggerSmartContract", call_token_value=1), "value_with_call"),
        (_param(USDT_RAW, "TriggerSmartContract", token_id=1000001), "value_with_call"),
        (
            _param(USDT_RAW, "TriggerSmartContract", data=transfer_calldata(bytes(20), 1) + b"\0"),
            "calldata_length",
        ),
        (
            _param(
                USDT_RAW,
                "TriggerSmartContract",
                data=APPROVE + transfer_calldata(bytes(20), 1)[4:],
            ),
            "unknown_call",
        ),
    ],
)
def test_refused_raw_data(raw: bytes, problem: str) -> None:
    with pytest.raises(TxDecodeError) as error:
        decode(MAINNET, raw)
    assert error.value.problem == problem


def test_an_evm_transaction_is_not_tron_raw_data() -> None:
    from tests.support.signer import unsigned_tx

    with pytest.raises(TxDecodeError):
        decode(MAINNET, unsigned_tx("eip1559", 1, "0x" + "ab" * 20, 5))


def test_signed_transaction_is_raw_data_and_one_65_byte_signature() -> None:
    tx = tron_tx.decode_raw_data(TRX_RAW)
    signed = M("Transaction").FromString(tx.signed(5, 7, 1))
    assert signed.raw_data == TRX_RAW
    assert list(signed.signature) == [(5).to_bytes(32, "big") + (7).to_bytes(32, "big") + b"\x1c"]


def _intent(**over: str) -> dict[str, str]:
    fields = {
        "chain": MAINNET,
        "asset": USDT,
        "destination": PAYEE,
        "amount": "7000000",
        "purpose": "PAYOUT",
        "reference": "r",
        "tx_id": hashlib.sha256(USDT_RAW).hexdigest(),
    }
    return {**fields, **over}


def test_tron_intent_matches_its_raw_data() -> None:
    decoded = decode(MAINNET, USDT_RAW)
    intent = parse_intent(**_intent())
    assert mismatch(intent, decoded.transfer, decoded.tx_id) is None


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"destination": address(0x33)}, "destination"),
        ({"amount": "7000001"}, "amount"),
        ({"asset": TRX}, "asset"),
        ({"asset": f"{MAINNET}/trc20:{address(0x44)}"}, "asset"),
        ({"tx_id": hashlib.sha256(TRX_RAW).hexdigest()}, "tx_id"),
    ],
)
def test_tron_intent_mismatch_names_the_field(over: dict[str, str], field: str) -> None:
    decoded = decode(MAINNET, USDT_RAW)
    wrong = mismatch(parse_intent(**_intent(**over)), decoded.transfer, decoded.tx_id)
    assert wrong is not None and wrong.field == field


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"tx_id": ""}, "tx_id"),
        ({"tx_id": "AB" * 32}, "tx_id"),
        ({"destination": "0x" + "22" * 20}, "destination"),
        ({"destination": PAYEE[:-1] + "x"}, "destination"),
        ({"asset": f"{MAINNET}/erc20:0x" + "11" * 20}, "asset"),
        ({"asset": f"{MAINNET}/trc20:{USDT_CONTRACT[:-1]}u"}, "asset"),
        ({"amount": "0"}, "amount"),
    ],
)
def test_tron_intent_invalid(over: dict[str, str], field: str) -> None:
    with pytest.raises(IntentInvalid) as error:
        parse_intent(**_intent(**over))
    assert error.value.field == field


def test_evm_intent_takes_no_tx_id() -> None:
    with pytest.raises(IntentInvalid) as error:
        parse_intent("eip155:1", "eip155:1/slip44:60", "0x" + "11" * 20, "1", "PAYOUT", "", "ab")
    assert error.value.field == "tx_id"


TREASURY = address(0x7A)
POLICY = f"""
version = 1
[chains."{MAINNET}"]
treasury = "{TREASURY}"
max_fee_limit = "50000000"
max_total_fee = "52000000"

[caps]
"{TRX}" = "100000000"
"{USDT}" = "1000000000"

[[velocity]]
key_id = "hot-1"
asset = "{TRX}"
max_amount = "1000000000"

[[velocity]]
key_id = "hot-1"
asset = "{USDT}"
max_amount = "5000000000"

[[rules]]
name = "tron payouts"
key_id = "hot-1"
purpose = "PAYOUT"
chain = "{MAINNET}"
asset = ["{TRX}", "{USDT}"]
action = "allow"
"""


def _facts(raw: bytes, asset: str, amount: int, chain: str = MAINNET) -> Facts:
    decoded = decode(MAINNET, raw)
    return Facts(
        "payments", "hot-1", "PAYOUT", asset, PAYEE, amount, frozenset(), chain, decoded.fee
    )


def test_policy_names_tron_chains_and_caps_fee_limit() -> None:
    policy = parse_policy(POLICY.encode())
    chain = policy.chains[MAINNET]
    assert (chain.treasury, chain.max_fee_limit, chain.max_total_fee) == (
        TREASURY,
        50_000_000,
        52_000_000,
    )
    ok = _facts(USDT_RAW, USDT, 7_000_000)
    used = dict.fromkeys(policy.velocity, 0)
    assert decide(ok, policy, used).allowed
    # The fee counts toward TRX, the coin it burns: fee_limit and the bandwidth bound.
    assert movements(ok)[TRX] == 30_000_000 + tron_tx.BANDWIDTH_BURN_MAX_SUN
    high = _facts(raw_data(OWNER, PAYEE, 7_000_000, USDT_CONTRACT, 50_000_001), USDT, 7_000_000)
    refused = decide(high, policy, used)
    assert (refused.reason, refused.metadata["fee_field"]) == ("FEE_OVER_CAP", "fee_limit")
    trx = _facts(TRX_RAW, TRX, 5_000_000)
    assert movements(trx)[TRX] == 5_000_000 + tron_tx.BANDWIDTH_BURN_MAX_SUN + (
        tron_tx.ACCOUNT_CREATION_BURN_SUN
    )
    assert decide(trx, policy, used).allowed
    over = _facts(raw_data(OWNER, PAYEE, 100_000_001), TRX, 100_000_001)
    assert decide(over, policy, used).reason == "OVER_TX_CAP"
    assert decide(_facts(TRX_RAW, TRX, 5_000_000, NILE), policy, used).reason == (
        "CHAIN_NOT_CONFIGURED"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (POLICY.replace('max_fee_limit = "50000000"\n', ""), "needs max_fee_limit"),
        (POLICY.replace("max_fee_limit", "max_gas"), "unknown key"),
        (POLICY.replace(f'treasury = "{TREASURY}"', f'treasury = "{TREASURY[:-1]}x"'), "TRON"),
        (POLICY.replace(f'treasury = "{TREASURY}"', 'treasury = "0x' + "11" * 20 + '"'), "chain"),
        (POLICY.replace(USDT_CONTRACT, USDT_CONTRACT[:-1] + "u", 1), "TRON address"),
    ],
)
def test_policy_refuses_bad_tron_entries(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text.encode())


def test_core_asset_model_names_tron_chains_and_tokens() -> None:
    from core.domain import assets

    assert assets.chain_of(USDT) == MAINNET
    assert assets.chain_of(TRX) == MAINNET
    assert assets.native(MAINNET) == TRX
    assert assets.contract_of(USDT) == USDT_CONTRACT
    assert assets.contract_of(TRX) is None and assets.is_native(TRX)
    assert assets.is_tron_chain(MAINNET) and not assets.is_tron_chain("tron:0x2B6653DC")
    # The core serves no TRON chain yet: [[chains]] entries stay EVM (docs/chains.md).
    assert not assets.is_chain_id(MAINNET)
    for bad in (
        f"{MAINNET}/trc20:{USDT_CONTRACT[:-1]}u",  # checksum
        f"{MAINNET}/trc20:{USDT_CONTRACT.lower()}",  # base58 is case-sensitive
        f"{MAINNET}/slip44:60",
        f"{MAINNET}/erc20:0x" + "11" * 20,
        "tron:0x2b6653d/slip44:195",
        f"{MAINNET}/trc20:{USDT_CONTRACT}\n",
    ):
        with pytest.raises(ValueError):
            assets.chain_of(bad)


def test_core_derives_the_tron_address_of_the_signers_deposit_key() -> None:
    """Same child key, two address formats: the core's TRON address for index i is the address
    of the key the signer signs hd:<i> with (keccak of the public key, 0x41, base58check)."""
    from core.chain.hd import DepositAddresses
    from signer.hd import account as hd_account

    account = hd_account.account_key(bytearray(range(32)))
    addresses = DepositAddresses(account.neuter().serialize())
    for index in (*range(0, 2000, 7), 2**31 - 1):
        child = hd_account.deposit_child(account, index)
        expected = tron_address.of_public_key(child.public_key())
        assert addresses.tron_address(index) == expected
        assert tron_address.to_bytes(expected)[1:].hex() == addresses.address(index)[2:]
