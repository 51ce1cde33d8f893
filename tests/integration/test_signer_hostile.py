"""The signer against a compromised core: an attacker holding the core's caller key and its
mTLS certificate, talking to a real kassa-signer process on SoftHSM2 that runs the policy
scripts/localstack ships (localstack.fullstack.signer_policy). Every attack from the signer
policy issue is tried as that attacker would, and each is refused with its own reason AND
an audit record (docs/threat-model.md, "Signer: the compromised core")."""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import rlp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.fullstack import (
    APPROVAL_ABOVE_TOKEN,
    DEPOSIT_VELOCITY_TOKEN,
    HOT_VELOCITY_TOKEN,
    HOT_VELOCITY_WEI,
    SIGNER_MAX_FEE_PER_GAS_WEI,
    SIGNER_MAX_GAS,
    SIGNER_MAX_TOTAL_FEE_WEI,
    TX_CAP_TOKEN,
    PolicyChain,
    signer_policy,
)
from localstack.softhsm import SoftHsmToken
from signer.api.reasons import PIPELINE
from signer.hd.bip32 import child_public, parse_extended_key, uncompressed
from signer.policy.model import eip55
from signer.secp256k1 import address_of
from tests.support.grpc_errors import RichError, rich
from tests.support.signer import (
    APPROVE as APPROVE_SELECTOR,
)
from tests.support.signer import (
    PAYEE,
    STRANGER,
    TOKEN,
    USDC,
    Parties,
    Signer,
    address_bytes,
    body,
    cli,
    envelope,
    erc20_transfer,
    make_certs,
    start_signer,
)

TREASURY = "0x" + "7a" * 20
SHIPPED = signer_policy([PolicyChain("eip155:1", USDC, TREASURY)])
HOT_FLOAT_WEI = 100 * 10**18


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Signer]:
    base = tmp_path_factory.mktemp("hostile")
    token = SoftHsmToken(base / "softhsm").init()
    running = start_signer(token, base, certs, Parties(), SHIPPED)
    yield running
    assert running.close() == 0


def hd_address(s: Signer, index: int) -> str:
    child = child_public(child_public(parse_extended_key(s.xpub), 0), index)
    return address_of(uncompressed(child.public_key()))


def tx(
    to: str,
    value: int = 0,
    data: bytes = b"",
    *,
    chain_id: int = 1,
    max_fee: int = 30 * 10**9,
    gas: int = 100_000,
    nonce: int = 0,
) -> bytes:
    return b"\x02" + bytes(
        rlp.encode([chain_id, nonce, 10**9, max_fee, gas, address_bytes(to), value, data, []])
    )


def attack(s: Signer, request: signer_pb2.SignRequest, reason: str) -> RichError:
    """Sends as the compromised core; asserts the refusal's reason and its audit record."""
    before = len(s.audit())
    with pytest.raises(grpc.RpcError) as error:
        s.stub.Sign(request, timeout=20)
    refused = rich(error.value)
    assert (refused.domain, refused.reason) == ("kassa.signer", reason), refused
    assert refused.code != grpc.StatusCode.UNKNOWN
    records = s.audit()
    assert len(records) == before + 1, "exactly one audit record per refusal"
    last = records[-1]
    assert (last["decision"], last["reason"]) == ("REFUSED", reason)
    assert last["signature_hash"] is None and last["tx_hash"] is None
    assert last["caller"]["key_id"] == "core" or reason == "FIELD_TOO_LONG"
    return refused


def signs(s: Signer, request: signer_pb2.SignRequest) -> signer_pb2.SignResponse:
    response: signer_pb2.SignResponse = s.stub.Sign(request, timeout=20)
    assert s.audit()[-1]["decision"] == "SIGNED"
    return response


def core(s: Signer, b: signer_pb2.SignRequestBody | bytes) -> signer_pb2.SignRequest:
    return envelope(b, s.parties.core)


# -- purposes are claims the signer verifies


def test_gas_funding_cannot_drain_the_hot_key(signer: Signer) -> None:
    gas = signer_pb2.PURPOSE_GAS_FUNDING
    # The whole float to an address of the attacker's choosing, no index named:
    drain = body(destination=STRANGER, amount=HOT_FLOAT_WEI, purpose=gas)
    error = attack(signer, core(signer, drain), "GAS_FUNDING_DESTINATION_MISMATCH")
    assert error.metadata["derived"] == ""
    # ...naming a deposit index, but another destination: the signer derives the address.
    drain.intent.destination_hd_index = 5
    error = attack(signer, core(signer, drain), "GAS_FUNDING_DESTINATION_MISMATCH")
    assert error.metadata["derived"] == hd_address(signer, 5)
    # ...to the real deposit address, but more than one sweep's gas:
    deposit = hd_address(signer, 5)
    big = body(destination=deposit, amount=SIGNER_MAX_TOTAL_FEE_WEI + 1, purpose=gas)
    big.intent.destination_hd_index = 5
    error = attack(signer, core(signer, big), "OVER_GAS_FUNDING_CAP")
    assert error.metadata["cap"] == str(SIGNER_MAX_TOTAL_FEE_WEI)
    # ...in the token rather than the native coin:
    token = body(asset=USDC, destination=deposit, amount=10**6, purpose=gas)
    token.intent.destination_hd_index = 5
    attack(signer, core(signer, token), "GAS_FUNDING_NOT_NATIVE")
    # What is signed: exactly one sweep's gas to the derived address, audited with its index.
    fair = body(destination=deposit, amount=SIGNER_MAX_TOTAL_FEE_WEI, purpose=gas)
    fair.intent.destination_hd_index = 5
    signs(signer, core(signer, fair))
    record = signer.audit()[-1]
    assert record["intent"]["destination_hd_index"] == "5"
    assert record["detail"]["rule"] == "gas funding of deposit addresses"


def _hot_address(s: Signer) -> str:
    key = s.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hot-1"), timeout=10).key
    return key.address.lower()


def _native_used(s: Signer) -> int:
    """What hot-1 has spent of its native velocity cap: the refusal of a payout over the cap
    (itself under the per-transaction cap) says, and reserves nothing."""
    probe = body(amount=HOT_VELOCITY_WEI + 1)
    error = attack(s, core(s, probe), "OVER_VELOCITY_CAP")
    assert error.metadata["cap_asset"] == "eip155:1/slip44:60"
    return int(error.metadata["used"])


def test_a_nonce_fill_moves_nothing_but_its_capped_fee(signer: Signer) -> None:
    """NONCE_FILL as the compromised core would abuse it: each part of its shape refused with
    its own reason and one audit record; what is signed costs only its fee, counted."""
    fill = signer_pb2.PURPOSE_NONCE_FILL
    hot = _hot_address(signer)
    # Value: the hot key's coin "to itself" is fine only at 0; anything more is a transfer.
    error = attack(
        signer,
        core(signer, body(destination=hot, amount=10**18, purpose=fill)),
        "NONCE_FILL_VALUE_NOT_ZERO",
    )
    assert error.metadata["amount"] == str(10**18)
    # Data: an ERC-20 transfer dressed as a fill...
    token = body(asset=USDC, destination=hot, amount=10**6, purpose=fill)
    assert attack(signer, core(signer, token), "NONCE_FILL_HAS_DATA").metadata["data_bytes"] == "68"
    # ...or any other call (an approve() to the attacker): never decoded into a signature.
    approve = APPROVE_SELECTOR + bytes(12) + bytes.fromhex(STRANGER[2:]) + (2**256 - 1).to_bytes(32)
    odd = body(destination=hot, amount=0, purpose=fill, tx=tx(TOKEN, 0, approve))
    attack(signer, core(signer, odd), "TX_DECODE_FAILED")
    # Another destination: the signer knows the key's address; the caller's word is not taken.
    error = attack(
        signer,
        core(signer, body(destination=STRANGER, amount=0, purpose=fill)),
        "NONCE_FILL_NOT_TO_SELF",
    )
    assert (error.metadata["destination"], error.metadata["key_address"]) == (STRANGER, hot)
    # A deposit key "filling" a nonce of its own: deposit keys only ever sweep.
    deposit = hd_address(signer, 9)
    attack(
        signer,
        core(signer, body(key_id="hd:9", destination=deposit, amount=0, purpose=fill)),
        "PURPOSE_KEY_MISMATCH",
    )
    # Fees over the chain's caps: burning the float as gas is refused like any other purpose.
    burn = tx(hot, 0, max_fee=SIGNER_MAX_FEE_PER_GAS_WEI + 1, gas=21_000)
    error = attack(
        signer, core(signer, body(destination=hot, amount=0, purpose=fill, tx=burn)), "FEE_OVER_CAP"
    )
    assert error.metadata["fee_field"] == "max_fee_per_gas"
    heavy = tx(hot, 0, max_fee=10**9, gas=SIGNER_MAX_GAS + 1)
    error = attack(
        signer,
        core(signer, body(destination=hot, amount=0, purpose=fill, tx=heavy)),
        "FEE_OVER_CAP",
    )
    assert error.metadata["fee_field"] == "gas"
    # What is signed: 0 to the key itself, no data, its fee counted toward the native cap.
    used = _native_used(signer)
    fair = tx(hot, 0, max_fee=30 * 10**9, gas=21_000, nonce=7)
    signs(signer, core(signer, body(destination=hot, amount=0, purpose=fill, tx=fair)))
    record = signer.audit()[-1]
    assert record["intent"]["purpose"] == "NONCE_FILL" and record["intent"]["amount"] == "0"
    assert record["intent"]["destination"] == hot and record["intent"]["nonce"] == "7"
    assert record["detail"]["rule"] == "nonce fills"
    assert _native_used(signer) == used + 21_000 * 30 * 10**9


def test_sweeps_go_to_the_treasury_only(signer: Signer) -> None:
    sweep = signer_pb2.PURPOSE_SWEEP
    error = attack(
        signer,
        core(signer, body(key_id="hd:9", destination=STRANGER, amount=10**15, purpose=sweep)),
        "SWEEP_NOT_TO_TREASURY",
    )
    assert error.metadata["treasury"] == TREASURY
    # A sweep is a deposit key's act: the hot key cannot claim it, deposit keys pay nothing else.
    attack(
        signer,
        core(signer, body(key_id="hot-1", destination=TREASURY, purpose=sweep)),
        "PURPOSE_KEY_MISMATCH",
    )
    attack(signer, core(signer, body(key_id="hd:9", destination=PAYEE)), "PURPOSE_KEY_MISMATCH")
    refund = body(key_id="hd:9", destination=PAYEE, purpose=signer_pb2.PURPOSE_REFUND)
    attack(signer, core(signer, refund), "PURPOSE_KEY_MISMATCH")
    signs(signer, core(signer, body(key_id="hd:9", destination=TREASURY, purpose=sweep)))


def test_splitting_under_the_approval_threshold_hits_the_velocity_cap(signer: Signer) -> None:
    """Payouts just under the approval threshold are signed until the hot key's window is
    spent; the next one is refused, and the refusal says how much was used."""
    # Above the threshold, approvals are needed, and the core has none to give.
    above = body(asset=USDC, amount=APPROVAL_ABOVE_TOKEN + 1)
    attack(signer, core(signer, above), "APPROVALS_REQUIRED")
    just_under = APPROVAL_ABOVE_TOKEN - 1
    count = HOT_VELOCITY_TOKEN // just_under
    for _ in range(count):
        signs(signer, core(signer, body(asset=USDC, amount=just_under)))
    error = attack(signer, core(signer, body(asset=USDC, amount=just_under)), "OVER_VELOCITY_CAP")
    assert error.metadata["cap"] == str(HOT_VELOCITY_TOKEN)
    assert error.metadata["used"] == str(count * just_under)


def test_deposit_keys_share_one_velocity_bucket(signer: Signer) -> None:
    sweep = signer_pb2.PURPOSE_SWEEP
    left = DEPOSIT_VELOCITY_TOKEN
    index = 100
    while left:
        amount = min(left, TX_CAP_TOKEN)
        b = body(asset=USDC, key_id=f"hd:{index}", destination=TREASURY, amount=amount)
        b.intent.purpose = sweep
        signs(signer, core(signer, b))
        left -= amount
        index += 1
    # A fresh deposit key does not bring a fresh cap: hd:* is one bucket.
    fresh = body(asset=USDC, key_id="hd:999", destination=TREASURY, amount=1, purpose=sweep)
    error = attack(signer, core(signer, fresh), "OVER_VELOCITY_CAP")
    assert error.metadata["cap_key_id"] == "hd:*"
    assert error.metadata["used"] == str(DEPOSIT_VELOCITY_TOKEN)


# -- fees, chains and assets


def test_fees_are_capped_and_audited(signer: Signer) -> None:
    one_wei = body(amount=1, tx=tx(PAYEE, 1, max_fee=10**20 // 100_000))  # a 100 ETH fee
    error = attack(signer, core(signer, one_wei), "FEE_OVER_CAP")
    assert error.metadata["fee_field"] == "max_fee_per_gas"
    record = signer.audit()[-1]
    assert record["intent"]["max_total_fee"] == str(10**20)
    gas_heavy = body(amount=1, tx=tx(PAYEE, 1, max_fee=10**9, gas=SIGNER_MAX_GAS + 1))
    assert attack(signer, core(signer, gas_heavy), "FEE_OVER_CAP").metadata["fee_field"] == "gas"
    # Each within its cap, the product over the total-fee cap:
    total = SIGNER_MAX_TOTAL_FEE_WEI // SIGNER_MAX_GAS  # = the max fee per gas
    assert total == SIGNER_MAX_FEE_PER_GAS_WEI
    signs(signer, core(signer, body(amount=1, tx=tx(PAYEE, 1, max_fee=total, gas=SIGNER_MAX_GAS))))
    assert signer.audit()[-1]["intent"]["max_total_fee"] == str(SIGNER_MAX_TOTAL_FEE_WEI)


def test_chains_and_assets_the_policy_never_names_are_refused(signer: Signer) -> None:
    other = body(chain="eip155:5", asset="eip155:5/slip44:60", amount=1)
    attack(signer, core(signer, other), "CHAIN_NOT_CONFIGURED")
    unknown_token = "0x" + "ee" * 20
    stray = body(
        asset=f"eip155:1/erc20:{unknown_token}",
        amount=1,
        tx=tx(unknown_token, 0, erc20_transfer(PAYEE, 1)),
    )
    attack(signer, core(signer, stray), "POLICY_NO_MATCH")


def test_policy_check_refuses_a_miscased_token_address(signer: Signer, tmp_path: Path) -> None:
    """The old escape: an EIP-55 address in the policy silently disabled its cap. A wrong
    checksum is a load error now; a right one is canonicalised and caps as before."""
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(SHIPPED.replace(TOKEN, "0x" + "7E" * 19 + "7e"))
    result = cli(signer.token, signer.config, "policy", "check", str(wrong))
    assert result.returncode == 2 and "EIP-55" in result.stdout, result.stdout
    right = tmp_path / "right.toml"
    right.write_text(SHIPPED.replace(TOKEN, eip55(TOKEN)))
    result = cli(signer.token, signer.config, "policy", "check", str(right))
    assert result.returncode == 0, result.stdout
    assert "OK" in cli(signer.token, signer.config, "policy", "check").stdout


# -- malformed and oversized input: refused with a reason, audited, never UNKNOWN


def _nested(depth: int) -> bytes:
    item = b"\xc0"
    for _ in range(depth):
        n = len(item)
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        item = (bytes([0xC0 + n]) if n < 56 else bytes([0xF7 + len(size)]) + size) + item
    return item


def test_empty_and_invalid_requests(signer: Signer) -> None:
    empty = core(signer, body())
    empty.envelope.body = b""
    attack(signer, empty, "ENVELOPE_EMPTY")
    b = body()
    b.intent.amount = "1e18"
    assert attack(signer, core(signer, b), "INTENT_INVALID").metadata["field"] == "amount"


def test_deeply_nested_rlp_is_a_decode_refusal(signer: Signer) -> None:
    error = attack(signer, core(signer, body(tx=b"\x02" + _nested(1200))), "TX_DECODE_FAILED")
    assert error.metadata["problem"] == "too_deep"


def test_out_of_range_timestamps_are_refused(signer: Signer) -> None:
    b = body()
    b.expire_time.seconds = 10**13
    error = attack(signer, core(signer, b), "BODY_INVALID")
    assert (error.metadata["problem"], error.metadata["field"]) == ("bad_timestamp", "expire_time")
    b = body()
    b.issue_time.nanos = -1
    assert attack(signer, core(signer, b), "BODY_INVALID").metadata["problem"] == "bad_timestamp"


def test_the_signed_body_is_canonical(signer: Signer) -> None:
    b = body()
    # An unknown field inside the intent (field 99, varint 1): what an approver's tool shows
    # would not be all that is signed.
    intent = signer_pb2.Intent.FromString(b.intent.SerializeToString() + b"\x98\x06\x01")
    b.intent.CopyFrom(intent)
    error = attack(signer, core(signer, b.SerializeToString()), "BODY_INVALID")
    assert error.metadata["problem"] == "unknown_fields"
    # The same message in another encoding: request_id sent twice (the parser keeps the last).
    raw = body().SerializeToString()
    twice = b"\x0a\x01x" + raw
    error = attack(signer, core(signer, twice), "BODY_INVALID")
    assert error.metadata["problem"] == "non_canonical"


def test_oversized_fields_are_refused_before_they_reach_the_audit_log(signer: Signer) -> None:
    b = body()
    b.intent.reference = "r" * 10_000
    error = attack(signer, core(signer, b), "FIELD_TOO_LONG")
    assert error.metadata["field"] == "intent.reference"
    assert len(json.dumps(signer.audit()[-1])) < 4_000
    long_caller = envelope(body(), signer.parties.core, caller_key_id="c" * 5_000)
    assert attack(signer, long_caller, "FIELD_TOO_LONG").metadata["field"] == "caller_key_id"
    assert len(signer.audit()[-1]["caller"]["key_id"]) < 100
    assert "c" * 100 not in (signer.config.parent / "signer.log").read_text()
    many = envelope(body(), signer.parties.core)
    for i in range(9):
        many.envelope.approvals.add(approver_key_id=f"a{i}", signature=b"\0" * 64)
    assert attack(signer, many, "FIELD_TOO_LONG").metadata["field"] == "approvals"
    # A message over the server's limit never reaches the handler (gRPC refuses it).
    huge = envelope(body(), signer.parties.core)
    huge.envelope.caller_signature = b"\0" * 100_000
    with pytest.raises(grpc.RpcError) as error:
        signer.stub.Sign(huge, timeout=20)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- key lookups


def _intruder(certs: Path, port: int) -> grpc.Channel:
    """A client certificate from the same CA, for a name no caller is allowlisted under."""
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kassa-intruder")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    credentials = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def test_key_lookups_only_for_allowlisted_callers(signer: Signer, certs: Path) -> None:
    channel = _intruder(certs, signer.port)
    stub = signer_pb2_grpc.SignerServiceStub(channel)
    try:
        for call, request in (
            (stub.GetPublicKey, signer_pb2.GetPublicKeyRequest(key_id="hot-1")),
            (stub.ListKeys, signer_pb2.ListKeysRequest()),
        ):
            before = len(signer.audit())
            with pytest.raises(grpc.RpcError) as error:
                call(request, timeout=10)
            assert rich(error.value).reason == "CALLER_NOT_ALLOWED"
            records = signer.audit()
            assert len(records) == before + 1
            assert records[-1]["reason"] == "CALLER_NOT_ALLOWED"
            assert records[-1]["caller"]["tls_subject"] == "CN=kassa-intruder"
    finally:
        channel.close()
    # The core's certificate is allowlisted; what it asks is bounded too.
    key = signer.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hot-1"), timeout=10)
    assert key.key.address
    with pytest.raises(grpc.RpcError) as error:
        signer.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="k" * 5_000), timeout=10)
    assert rich(error.value).reason == "FIELD_TOO_LONG"


def test_the_audit_chain_of_all_this_verifies(signer: Signer) -> None:
    result = cli(signer.token, signer.config, "audit", "verify", str(signer.db))
    assert result.returncode == 0 and result.stdout.startswith("OK"), result.stdout


# -- a call cancelled after admission


def _in_flight(s: Signer, request_id: str) -> bool:
    conn = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT 1 FROM requests WHERE request_id = ? AND response IS NULL", (request_id,)
        ).fetchone()
    finally:
        conn.close()
    return row is not None


def test_a_cancelled_call_is_audited_and_its_reservation_kept(tmp_path: Path, certs: Path) -> None:
    token = SoftHsmToken(tmp_path / "softhsm").init()
    slow = start_signer(
        token, tmp_path, certs, Parties(), SHIPPED, {"KASSA_SIGNER_FAULT_SIGN_DELAY_S": "2.5"}
    )
    try:
        request = core(slow, body(asset=USDC, amount=1_000))
        with pytest.raises(grpc.RpcError) as error:
            slow.stub.Sign(request, timeout=1.0)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 10
        while not any(r["reason"] == "REQUEST_CANCELLED" for r in slow.audit()):
            assert time.monotonic() < deadline, slow.audit()
            time.sleep(0.1)
        record = next(r for r in slow.audit() if r["reason"] == "REQUEST_CANCELLED")
        assert record["decision"] == "REFUSED"
        assert record["detail"]["velocity"] == "reservation kept: counted as spent"
        assert record["detail"]["request_id_guard"] == "released"
        # The retry is admitted afresh (the id was released) and the first reservation stays;
        # while it is being signed, the same request again is in flight.
        with ThreadPoolExecutor(1) as pool:
            retry = pool.submit(slow.stub.Sign, request, timeout=20)
            request_id = signer_pb2.SignRequestBody.FromString(request.envelope.body).request_id
            while not _in_flight(slow, request_id):
                assert time.monotonic() < deadline + 10
                time.sleep(0.05)
            attack(slow, request, "REQUEST_IN_FLIGHT")
            assert retry.result().tx_hash
        over = body(asset=USDC, amount=HOT_VELOCITY_TOKEN - 1_000)
        error_info = attack(slow, core(slow, over), "OVER_VELOCITY_CAP")
        assert error_info.metadata["used"] == "2000"
        # The HSM side failing mid-request (here: the encrypted seed file damaged while a
        # sweep waits to be signed) is SIGNING_FAILED, audited, and the id is released.
        seed = slow.config.parent / "state" / "hd-seed.json"
        kept = seed.read_bytes()
        sweep = body(key_id="hd:1", destination=TREASURY, purpose=signer_pb2.PURPOSE_SWEEP)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(slow.stub.Sign, core(slow, sweep), timeout=20)
            time.sleep(0.3)
            seed.write_text("{damaged")
            with pytest.raises(grpc.RpcError) as failed:
                pending.result()
        seed.write_bytes(kept)
        assert rich(failed.value).reason == "SIGNING_FAILED"
        assert slow.audit()[-1]["reason"] == "SIGNING_FAILED"
        assert slow.stub.Sign(core(slow, sweep), timeout=20).tx_hash
    finally:
        assert slow.close() == 0


def test_the_window_rolls(tmp_path: Path, certs: Path) -> None:
    """The shipped policy with an 8 s window instead of 24 h (signer_policy's one parameter):
    the cap holds within the window and frees as the signatures age out of it."""
    token = SoftHsmToken(tmp_path / "softhsm").init()
    window_s = 8
    policy = signer_policy([PolicyChain("eip155:1", USDC, TREASURY)], window_s)
    short = start_signer(token, tmp_path, certs, Parties(), policy)
    try:
        started = time.monotonic()
        for _ in range(HOT_VELOCITY_TOKEN // APPROVAL_ABOVE_TOKEN):
            signs(short, core(short, body(asset=USDC, amount=APPROVAL_ABOVE_TOKEN)))
        attack(short, core(short, body(asset=USDC, amount=1)), "OVER_VELOCITY_CAP")
        assert time.monotonic() - started < window_s, "too slow to fill the window inside it"
        time.sleep(window_s + 0.5)
        signs(short, core(short, body(asset=USDC, amount=APPROVAL_ABOVE_TOKEN)))
    finally:
        assert short.close() == 0


def test_no_script_passes_a_pin_on_a_command_line() -> None:
    """The signer reads the PIN from a file (mode 0600) or the environment; the development
    token is initialised with softhsm2-util answering its prompts on a pseudo-terminal."""
    repo = Path(__file__).resolve().parents[2]
    offenders = subprocess.run(
        ["git", "grep", "-n", "-e", "--pin", "-e", "--so-pin", "--", "scripts", "signer"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert offenders == []


@pytest.mark.parametrize(
    "broken",
    [
        {"caller", "reference", "expired", "tx", "cap"},
        {"reference", "expired", "tx", "cap"},
        {"expired", "tx", "cap"},
        {"tx", "cap"},
        {"caller", "cap"},
        {"reference", "cap"},
        {"expired", "cap"},
    ],
)
def test_a_request_breaking_several_checks_gets_the_first_in_pipeline_order(
    signer: Signer, broken: set[str]
) -> None:
    """Across the whole pipeline, not only the policy: the reason is the one of the earliest
    step in reasons.PIPELINE among the checks the request breaks."""
    b = body(
        asset=USDC,
        amount=TX_CAP_TOKEN + 1 if "cap" in broken else 1,
        issue_s=time.time() - 600 if "expired" in broken else None,
        tx=b"\x02\xc1\x80" if "tx" in broken else None,
    )
    if "reference" in broken:
        b.intent.reference = "r" * 1_000
    request = envelope(b, signer.parties.core, "mallory" if "caller" in broken else "core")
    step_and_reason = {
        "caller": ("authenticate", "CALLER_UNKNOWN"),
        "reference": ("body", "FIELD_TOO_LONG"),
        "expired": ("window", "REQUEST_EXPIRED"),
        "tx": ("decode", "TX_DECODE_FAILED"),
        "cap": ("policy", "OVER_TX_CAP"),
    }
    steps = [name for name, _ in PIPELINE]
    _, first = min((step_and_reason[v] for v in broken), key=lambda sr: steps.index(sr[0]))
    before = len(signer.audit())
    with pytest.raises(grpc.RpcError) as error:
        signer.stub.Sign(request, timeout=20)
    assert rich(error.value).reason == first
    assert [r["reason"] for r in signer.audit()[before:]] == [first]
