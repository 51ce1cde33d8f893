"""The signer signs TRON transactions — TRX TransferContract and TRC-20 transfer through
TriggerSmartContract — from a hot key and from deposit keys, and tronweb (npm), reading the
signed bytes offline, independently finds: the txid the signer answered, a signature that
recovers to the key's TRON address, and the contract the intent stated. The deposit key's
address is the one the core derives from the account xpub (core.chain.hd).

As the attacker, a compromised core with a valid caller key: TRON intents whose raw_data says
something else, that exceed caps or fee caps, name a wrong address or another owner, or
smuggle another call, are refused with a reason and an audit record."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from core.chain.hd import DepositAddresses
from kassa.signer.v1 import signer_pb2
from localstack.softhsm import SoftHsmToken
from signer.chains import tron_address
from signer.chains.transfer import transfer_calldata
from signer.chains.tron_tx import BANDWIDTH_BURN_MAX_SUN
from signer.hd import account as hd_account
from tests.support.grpc_errors import rich
from tests.support.signer import (
    APPROVE,
    Parties,
    Signer,
    body,
    envelope,
    make_certs,
    start_signer,
)
from tests.support.tron import tronweb_addresses, tronweb_read
from tests.support.tron_build import MAINNET, NILE, TRX, USDT, USDT_CONTRACT, address, raw_data

TREASURY = address(0x7A)
PAYEE = address(0xA1)
STRANGER = address(0xBD)
OTHER_TOKEN = address(0x5E)
MAX_FEE_LIMIT = 50_000_000  # 50 TRX of energy
TRX_CAP = 100_000_000  # 100 TRX
USDT_CAP = 1_000_000_000  # 1,000 USDT
GAS_FUNDING_MAX = 20_000_000  # 20 TRX: energy for one TRC-20 sweep

POLICY = f"""
version = 1
[chains."{MAINNET}"]
treasury = "{TREASURY}"
gas_funding_max = "{GAS_FUNDING_MAX}"
max_fee_limit = "{MAX_FEE_LIMIT}"
max_total_fee = "52000000"

[allowlists]
tron_payees = ["{PAYEE}"]

[caps]
"{TRX}" = "{TRX_CAP}"
"{USDT}" = "{USDT_CAP}"
"{MAINNET}/trc20:{OTHER_TOKEN}" = "1"

[[velocity]]
key_id = "hot-1"
asset = "{TRX}"
max_amount = "100000000000"

[[velocity]]
key_id = "hot-1"
asset = "{USDT}"
max_amount = "100000000000"

[[rules]]
name = "tron sweeps"
caller_role = "payments"
purpose = "SWEEP"
key_id = "hd:*"
chain = "{MAINNET}"
asset = ["{TRX}", "{USDT}"]
action = "allow"

[[rules]]
name = "tron gas funding"
caller_role = "payments"
purpose = "GAS_FUNDING"
key_id = "hot-1"
chain = "{MAINNET}"
asset = "{TRX}"
action = "allow"

[[rules]]
name = "tron payees only"
purpose = ["PAYOUT", "REFUND"]
destination_not_in = "tron_payees"
action = "block"

[[rules]]
name = "tron payments"
caller_role = "payments"
key_id = "hot-1"
purpose = ["PAYOUT", "REFUND"]
chain = "{MAINNET}"
asset = ["{TRX}", "{USDT}"]
action = "allow"
"""


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signer]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    base = tmp_path_factory.mktemp("signer")
    token = SoftHsmToken(base / "softhsm").init()
    running = start_signer(token, base, certs, Parties(), policy=POLICY)
    yield running
    assert running.close() == 0


def hot_address(s: Signer) -> str:
    key = s.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hot-1"), timeout=10).key
    return tron_address.of_public_key(key.public_key)


def hd_address(s: Signer, index: int) -> str:
    return DepositAddresses(s.xpub).tron_address(index)


def tron_body(
    key_owner: str,
    *,
    asset: str = TRX,
    destination: str = PAYEE,
    amount: int = 5_000_000,
    key_id: str = "hot-1",
    purpose: Any = signer_pb2.PURPOSE_PAYOUT,
    chain: str = MAINNET,
    raw: bytes | None = None,
    tx_id: str | None = None,
) -> signer_pb2.SignRequestBody:
    token = None if asset.endswith("/slip44:195") else asset.rsplit(":", 1)[1]
    if raw is None:
        raw = raw_data(key_owner, destination, amount, token)
    b = body(
        asset=asset,
        destination=destination,
        amount=amount,
        key_id=key_id,
        purpose=purpose,
        chain=chain,
        tx=raw,
    )
    b.intent.tx_id = hashlib.sha256(raw).hexdigest() if tx_id is None else tx_id
    return b


def sign(s: Signer, b: signer_pb2.SignRequestBody) -> signer_pb2.SignResponse:
    response: signer_pb2.SignResponse = s.stub.Sign(envelope(b, s.parties.core), timeout=20)
    return response


def refused_and_audited(s: Signer, b: signer_pb2.SignRequestBody, reason: str) -> Any:
    before = len(s.audit())
    with pytest.raises(grpc.RpcError) as raised:
        sign(s, b)
    error = rich(raised.value)
    assert (error.domain, error.reason) == ("kassa.signer", reason), error
    records = s.audit()
    assert len(records) == before + 1
    last = records[-1]
    assert (last["decision"], last["reason"]) == ("REFUSED", reason)
    assert last["signature_hash"] is None and last["tx_hash"] is None
    assert last["request_id"] == b.request_id
    return error


def test_tronweb_agrees_with_bip_utils_on_key_addresses() -> None:
    keys = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(300)]
    from coincurve import PrivateKey

    ours = [tron_address.of_public_key(PrivateKey(k).public_key.format()) for k in keys]
    assert tronweb_addresses(keys) == ours


def test_tronweb_agrees_with_the_core_on_deposit_addresses() -> None:
    """The core's TRON deposit addresses (bip-utils, public derivation from the account xpub)
    are tronweb's addresses of the private keys the signer derives for hd:<i> from the seed
    (and its signatures from hd:<i> recover to them: test_signed_tron_transactions_...)."""
    seed = bytearray(hashlib.sha256(b"kassa tron vectors").digest())
    account = hd_account.account_key(bytearray(seed))
    addresses = DepositAddresses(account.neuter().serialize())
    indices = [*range(150), 2**31 - 1]
    children = [hd_account.deposit_child(account, i).key for i in indices]
    assert tronweb_addresses(children) == [addresses.tron_address(i) for i in indices]
    assert len({addresses.tron_address(i) for i in indices}) == len(indices)


@pytest.mark.parametrize("asset", [TRX, USDT])
@pytest.mark.parametrize("key", ["hot-1", "hd:7", "hd:12"])
def test_signed_tron_transactions_verify_in_tronweb(signer: Signer, asset: str, key: str) -> None:
    sweep = key.startswith("hd:")
    owner = hd_address(signer, int(key[3:])) if sweep else hot_address(signer)
    destination = TREASURY if sweep else PAYEE
    b = tron_body(
        owner,
        asset=asset,
        destination=destination,
        amount=4_321_000,
        key_id=key,
        purpose=signer_pb2.PURPOSE_SWEEP if sweep else signer_pb2.PURPOSE_PAYOUT,
    )
    response = sign(signer, b)
    [seen] = tronweb_read([response.signed_transaction])
    # The txid: computed by the signer, stated by the intent, and found by tronweb.
    assert seen["txid"] == response.tx_hash == b.intent.tx_id
    assert seen["txid"] == hashlib.sha256(b.unsigned_transaction).hexdigest()
    # The signed bytes carry raw_data unchanged, and tronweb's own encoder, given the JSON a
    # node answers with, writes exactly these bytes: the canonical form the signer insists on
    # is TRON's.
    assert seen["raw_data_hex"] == b.unsigned_transaction.hex()
    assert seen["reencoded_raw_data_hex"] == b.unsigned_transaction.hex()
    assert seen["recovered"] == [owner]
    assert seen["signatures"] == [(response.signature + bytes([27 + response.recovery_id])).hex()]
    assert seen["owner"] == owner and seen["permission_id"] == 0
    assert (seen["to"], seen["amount"]) == (destination, "4321000")
    if asset == TRX:
        assert seen["type"] == "TransferContract" and seen["fee_limit"] == "0"
        assert seen["type_url"] == "type.googleapis.com/protocol.TransferContract"
    else:
        assert seen["type"] == "TriggerSmartContract" and seen["is_transfer"] is True
        assert (seen["contract"], seen["call_value"]) == (USDT_CONTRACT, "0")
        assert seen["fee_limit"] == "30000000"
    last = signer.audit()[-1]
    assert (last["decision"], last["reason"]) == ("SIGNED", "ALLOWED")
    assert last["tx_hash"] == response.tx_hash
    assert last["intent"]["owner"] == owner and last["intent"]["txid"] == response.tx_hash


def test_raw_data_that_differs_from_the_intent_is_refused(signer: Signer) -> None:
    owner = hot_address(signer)
    cases = [
        # (raw_data says, the intent says, the field)
        (raw_data(owner, STRANGER, 5_000_000), {"destination": PAYEE}, "destination"),
        (raw_data(owner, PAYEE, 6_000_000), {"amount": 5_000_000}, "amount"),
        (raw_data(owner, PAYEE, 5_000_000, OTHER_TOKEN), {"asset": USDT}, "asset"),
        (raw_data(owner, PAYEE, 5_000_000), {"asset": USDT}, "asset"),
        (raw_data(owner, STRANGER, 5_000_000, USDT_CONTRACT), {"asset": USDT}, "destination"),
    ]
    for raw, stated, field in cases:
        kwargs: dict[str, Any] = {"destination": PAYEE, "amount": 5_000_000, **stated}
        error = refused_and_audited(signer, tron_body(owner, raw=raw, **kwargs), "INTENT_MISMATCH")
        assert error.metadata["field"] == field, (stated, error)
        assert signer.audit()[-1]["detail"]["field"] == field


def test_a_tx_id_other_than_the_signed_bytes_is_refused(signer: Signer) -> None:
    """The caller's txid is never what gets signed: the signer hashes raw_data itself."""
    owner = hot_address(signer)
    decoy = raw_data(owner, PAYEE, 1_000)
    b = tron_body(owner, tx_id=hashlib.sha256(decoy).hexdigest())
    error = refused_and_audited(signer, b, "INTENT_MISMATCH")
    assert error.metadata["field"] == "tx_id"
    assert error.metadata["actual"] == hashlib.sha256(b.unsigned_transaction).hexdigest()
    missing = tron_body(owner, tx_id="")
    assert refused_and_audited(signer, missing, "INTENT_INVALID").metadata["field"] == "tx_id"


def test_raw_data_owned_by_another_account_is_refused(signer: Signer) -> None:
    """raw_data names its sender: a hot key never signs for another account (a multisig the
    attacker set up, say), nor a deposit key for another deposit address."""
    b = tron_body(STRANGER)
    error = refused_and_audited(signer, b, "INTENT_MISMATCH")
    assert (error.metadata["field"], error.metadata["actual"]) == ("owner", STRANGER)
    assert error.metadata["stated"] == hot_address(signer)
    sweep = tron_body(
        hd_address(signer, 8),
        key_id="hd:9",
        destination=TREASURY,
        purpose=signer_pb2.PURPOSE_SWEEP,
    )
    error = refused_and_audited(signer, sweep, "INTENT_MISMATCH")
    assert (error.metadata["field"], error.metadata["stated"]) == ("owner", hd_address(signer, 9))


def test_caps_fee_caps_and_wrong_addresses_are_refused(signer: Signer) -> None:
    owner = hot_address(signer)
    over = refused_and_audited(signer, tron_body(owner, amount=TRX_CAP + 1), "OVER_TX_CAP")
    assert over.metadata["cap"] == str(TRX_CAP)
    refused_and_audited(signer, tron_body(owner, asset=USDT, amount=USDT_CAP + 1), "OVER_TX_CAP")
    fee = tron_body(
        owner,
        asset=USDT,
        raw=raw_data(owner, PAYEE, 5_000_000, USDT_CONTRACT, MAX_FEE_LIMIT + 1),
    )
    error = refused_and_audited(signer, fee, "FEE_OVER_CAP")
    assert (error.metadata["fee_field"], error.metadata["value"]) == (
        "fee_limit",
        str(MAX_FEE_LIMIT + 1),
    )
    refused_and_audited(signer, tron_body(owner, destination=STRANGER), "DESTINATION_NOT_ALLOWED")
    hd = hd_address(signer, 3)
    not_treasury = tron_body(hd, key_id="hd:3", destination=PAYEE, purpose=signer_pb2.PURPOSE_SWEEP)
    refused_and_audited(signer, not_treasury, "SWEEP_NOT_TO_TREASURY")
    payout_from_deposit = tron_body(hd, key_id="hd:3")
    refused_and_audited(signer, payout_from_deposit, "PURPOSE_KEY_MISMATCH")
    # The signer's policy names no rule for another token, nor another TRON network.
    other = f"{MAINNET}/trc20:{OTHER_TOKEN}"
    refused_and_audited(signer, tron_body(owner, asset=other, amount=1), "POLICY_NO_MATCH")
    nile = tron_body(owner, chain=NILE, asset=f"{NILE}/slip44:195")
    refused_and_audited(signer, nile, "CHAIN_NOT_CONFIGURED")


def test_smuggled_calls_and_fields_are_refused(signer: Signer) -> None:
    owner = hot_address(signer)
    approve = raw_data(
        owner,
        PAYEE,
        5_000_000,
        USDT_CONTRACT,
        data=APPROVE + transfer_calldata(tron_address.to_bytes(PAYEE)[1:], 1)[4:],
    )
    error = refused_and_audited(
        signer, tron_body(owner, asset=USDT, raw=approve), "TX_DECODE_FAILED"
    )
    assert error.metadata["problem"] == "unknown_call"
    evm = body(asset="eip155:1/slip44:60").unsigned_transaction
    error = refused_and_audited(signer, tron_body(owner, raw=evm), "TX_DECODE_FAILED")
    assert error.metadata["problem"] in {"bad_protobuf", "non_canonical"}
    evm_intent = tron_body(owner)
    evm_intent.intent.asset, evm_intent.intent.destination = "eip155:1/slip44:60", "0x" + "a1" * 20
    error = refused_and_audited(signer, evm_intent, "INTENT_INVALID")
    assert error.metadata["field"] == "asset"


def test_tron_fee_ceiling_is_recorded(signer: Signer) -> None:
    """A TRC-20 transfer's fee ceiling — fee_limit plus the bandwidth bound — is TRX that can
    leave the key: the audit record carries both, and velocity counts the total in TRX."""
    owner = hot_address(signer)
    response = sign(signer, tron_body(owner, asset=USDT, amount=1_000))
    assert response.tx_hash
    last = signer.audit()[-1]
    assert last["intent"]["fee_limit"] == "30000000"
    assert last["intent"]["max_total_fee"] == str(30_000_000 + BANDWIDTH_BURN_MAX_SUN)


def test_gas_funding_goes_only_to_the_deposit_address_the_signer_derives(signer: Signer) -> None:
    """TRX for a TRC-20 sweep's energy: only to the TRON address of the named deposit index,
    derived by the signer from its own seed, and bounded."""
    owner = hot_address(signer)
    deposit = hd_address(signer, 21)

    def funding(destination: str, amount: int) -> signer_pb2.SignRequestBody:
        b = tron_body(
            owner, destination=destination, amount=amount, purpose=signer_pb2.PURPOSE_GAS_FUNDING
        )
        b.intent.destination_hd_index = 21
        return b

    response = sign(signer, funding(deposit, 15_000_000))
    [seen] = tronweb_read([response.signed_transaction])
    assert (seen["to"], seen["amount"], seen["recovered"]) == (deposit, "15000000", [owner])
    wrong = refused_and_audited(
        signer, funding(hd_address(signer, 22), 15_000_000), "GAS_FUNDING_DESTINATION_MISMATCH"
    )
    assert wrong.metadata["derived"] == deposit
    refused_and_audited(signer, funding(deposit, GAS_FUNDING_MAX + 1), "OVER_GAS_FUNDING_CAP")
