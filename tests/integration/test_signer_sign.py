"""Sign end to end: a real kassa-signer process over mTLS (certificates from
scripts/make-dev-certs) on a real SoftHSM2 token. Signatures are checked independently
(eth-account recovers the signer's address; the signed bytes decode to the intent), and every
refusal is checked for its reason AND for its audit record."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import rlp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.softhsm import SoftHsmToken
from signer.hd.bip32 import child_public, parse_extended_key, uncompressed
from signer.secp256k1 import address_of, keccak256
from tests.support.grpc_errors import RichError, rich
from tests.support.signer import (
    APPROVE,
    ETH,
    PAYEE,
    PAYEE_2,
    POLICY,
    STRANGER,
    TOKEN,
    TREASURY,
    USDC,
    VELO,
    Parties,
    Signer,
    address_bytes,
    body,
    channel,
    cli,
    envelope,
    erc20_transfer,
    make_certs,
    start_signer,
    unsigned_tx,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Signer]:
    base = tmp_path_factory.mktemp("signer")
    token = SoftHsmToken(base / "softhsm").init()
    running = start_signer(token, base, certs, Parties())
    yield running
    assert running.close() == 0


def hot_address(s: Signer) -> str:
    key = s.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hot-1"), timeout=10).key
    return str(key.address)


def hd_address(s: Signer, index: int) -> str:
    child = child_public(child_public(parse_extended_key(s.xpub), 0), index)
    return address_of(uncompressed(child.public_key()))


def refused(
    s: Signer,
    request: signer_pb2.SignRequest,
    stub: signer_pb2_grpc.SignerServiceStub | None = None,
) -> RichError:
    with pytest.raises(grpc.RpcError) as error:
        (stub or s.stub).Sign(request, timeout=20)
    return rich(error.value)


def assert_refused_and_audited(
    s: Signer,
    request: signer_pb2.SignRequest,
    reason: str,
    stub: signer_pb2_grpc.SignerServiceStub | None = None,
) -> RichError:
    before = len(s.audit())
    error = refused(s, request, stub)
    assert (error.domain, error.reason) == ("kassa.signer", reason), error
    records = s.audit()
    assert len(records) == before + 1
    last = records[-1]
    assert (last["decision"], last["reason"]) == ("REFUSED", reason)
    assert last["signature_hash"] is None and last["tx_hash"] is None
    assert last["request_hash"]
    return error


def check_signed(
    s: Signer,
    request: signer_pb2.SignRequest,
    response: signer_pb2.SignResponse,
    signer_address: str,
) -> None:
    """Independently: eth-account recovers the address; the bytes say what the intent says."""
    raw = response.signed_transaction
    assert Account.recover_transaction(raw).lower() == signer_address
    assert response.tx_hash == "0x" + keccak256(raw).hex()
    assert len(response.signature) == 64
    s_value = int.from_bytes(response.signature[32:], "big")
    assert s_value <= 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
    b = signer_pb2.SignRequestBody.FromString(request.envelope.body)
    if raw[0] == 2:
        fields = rlp.decode(raw[1:])
        chain_id, to, value, data = fields[0], fields[5], fields[6], fields[7]
        assert int.from_bytes(fields[9], "big") == response.recovery_id
        assert fields[10:] == [
            response.signature[:32].lstrip(b"\0"),
            response.signature[32:].lstrip(b"\0"),
        ]
    else:
        fields = rlp.decode(raw)
        to, value, data = fields[3], fields[4], fields[5]
        v = int.from_bytes(fields[6], "big")
        chain_id = ((v - 35) // 2).to_bytes(1, "big")
        assert v == response.recovery_id + 35 + 2 * 1
    assert f"eip155:{int.from_bytes(chain_id, 'big')}" == b.chain
    if b.intent.asset == ETH:
        assert (to, int.from_bytes(value, "big"), data) == (
            address_bytes(b.intent.destination),
            int(b.intent.amount),
            b"",
        )
    else:
        assert to == address_bytes(b.intent.asset.rsplit(":", 1)[1]) and value == b""
        assert data == erc20_transfer(b.intent.destination, int(b.intent.amount))
    last = s.audit()[-1]
    assert (last["decision"], last["reason"]) == ("SIGNED", "ALLOWED")
    assert last["record_hash"] == response.audit_record_hash
    assert last["tx_hash"] == response.tx_hash
    assert last["request_id"] == b.request_id


@pytest.mark.parametrize("kind", ["eip1559", "legacy"])
@pytest.mark.parametrize("asset", [ETH, USDC])
def test_hot_key_signs_native_and_erc20(signer: Signer, kind: str, asset: str) -> None:
    request = envelope(body(asset=asset, kind=kind, amount=12345), signer.parties.core)
    response = signer.stub.Sign(request, timeout=20)
    check_signed(signer, request, response, hot_address(signer))


@pytest.mark.parametrize("kind", ["eip1559", "legacy"])
@pytest.mark.parametrize("asset", [ETH, USDC])
def test_hd_key_signs_a_sweep_from_the_deposit_address(
    signer: Signer, kind: str, asset: str
) -> None:
    request = envelope(
        body(
            asset=asset,
            kind=kind,
            key_id="hd:7",
            destination=TREASURY,
            amount=54321,
            purpose=signer_pb2.PURPOSE_SWEEP,
        ),
        signer.parties.core,
    )
    response = signer.stub.Sign(request, timeout=20)
    check_signed(signer, request, response, hd_address(signer, 7))
    assert hd_address(signer, 7) != hd_address(signer, 8)


def test_same_request_id_and_body_returns_the_first_answer(signer: Signer) -> None:
    request = envelope(body(), signer.parties.core)
    first = signer.stub.Sign(request, timeout=20)
    again = signer.stub.Sign(request, timeout=20)
    assert again == first
    last = signer.audit()[-1]
    assert (last["decision"], last["reason"]) == ("REPLAYED", "REQUEST_REPLAYED")
    assert last["tx_hash"] == first.tx_hash
    changed = body(
        request_id=signer_pb2.SignRequestBody.FromString(request.envelope.body).request_id,
        amount=777,
    )
    error = assert_refused_and_audited(
        signer, envelope(changed, signer.parties.core), "REQUEST_ID_REUSED"
    )
    assert error.code == grpc.StatusCode.ALREADY_EXISTS


def test_envelope_refusals(signer: Signer) -> None:
    core = signer.parties.core
    good = body()
    forged = envelope(good, Ed25519PrivateKey.generate())
    assert (
        assert_refused_and_audited(signer, forged, "SIGNATURE_INVALID").code
        == grpc.StatusCode.UNAUTHENTICATED
    )
    tampered = envelope(good, core)
    tampered.envelope.body = tampered.envelope.body[:-1] + bytes([tampered.envelope.body[-1] ^ 1])
    assert_refused_and_audited(signer, tampered, "SIGNATURE_INVALID")
    assert_refused_and_audited(
        signer, envelope(good, core, caller_key_id="mallory"), "CALLER_UNKNOWN"
    )
    # A valid key of another caller, sent over core's TLS identity.
    stolen = envelope(good, signer.parties.adapters, caller_key_id="adapters")
    error = assert_refused_and_audited(signer, stolen, "CALLER_TLS_MISMATCH")
    assert error.metadata["tls_subject"] == "CN=kassa-core"
    bad_approval = envelope(good, core, approvers={"alice": signer.parties.approvers["bob"]})
    assert (
        assert_refused_and_audited(signer, bad_approval, "APPROVAL_INVALID").metadata["problem"]
        == "signature"
    )


def test_core_key_over_the_adapters_certificate_is_refused(signer: Signer) -> None:
    with channel(signer.port, signer.certs, "adapters") as other:
        stub = signer_pb2_grpc.SignerServiceStub(other)
        assert_refused_and_audited(
            signer, envelope(body(), signer.parties.core), "CALLER_TLS_MISMATCH", stub
        )


def test_no_client_certificate_never_reaches_the_signer(signer: Signer) -> None:
    before = len(signer.audit())
    with (
        channel(signer.port, signer.certs, None) as anonymous,
        pytest.raises(grpc.RpcError) as error,
    ):
        signer_pb2_grpc.SignerServiceStub(anonymous).Sign(
            envelope(body(), signer.parties.core), timeout=10
        )
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(signer.audit()) == before  # refused in the handshake, before any handler


@pytest.mark.parametrize(
    ("issue_offset_s", "lifetime_s", "reason"),
    [
        (-200, 30, "REQUEST_EXPIRED"),
        (200, 30, "REQUEST_NOT_YET_VALID"),
        (0, 61, "REQUEST_LIFETIME_TOO_LONG"),
        (0, -1, "REQUEST_LIFETIME_TOO_LONG"),
    ],
)
def test_validity_window(
    signer: Signer, issue_offset_s: float, lifetime_s: float, reason: str
) -> None:
    request = envelope(
        body(issue_s=time.time() + issue_offset_s, lifetime_s=lifetime_s), signer.parties.core
    )
    assert_refused_and_audited(signer, request, reason)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tx": unsigned_tx("eip1559", 1, PAYEE, 999)}, "amount"),
        ({"tx": unsigned_tx("eip1559", 1, PAYEE_2, 10**15)}, "destination"),
        ({"tx": unsigned_tx("eip1559", 5, PAYEE, 10**15)}, "chain"),
        (
            {"tx": unsigned_tx("legacy", 1, "0x" + "99" * 20, 0, erc20_transfer(PAYEE, 10**15))},
            "asset",
        ),
        (
            {
                "asset": USDC,
                "tx": unsigned_tx("eip1559", 1, "0x" + "98" * 20, 0, erc20_transfer(PAYEE, 10**15)),
            },
            "asset",
        ),
        (
            {"asset": USDC, "tx": unsigned_tx("eip1559", 1, TOKEN, 0, erc20_transfer(PAYEE, 1))},
            "amount",
        ),
        ({"asset": "eip155:5/slip44:60"}, "asset_chain"),
    ],
)
def test_intent_mismatch_names_the_field(
    signer: Signer, kwargs: dict[str, object], field: str
) -> None:
    error = assert_refused_and_audited(
        signer,
        envelope(body(**kwargs), signer.parties.core),  # type: ignore[arg-type]
        "INTENT_MISMATCH",
    )
    assert error.metadata["field"] == field
    assert signer.audit()[-1]["detail"]["field"] == field


@pytest.mark.parametrize(
    ("tx", "problem"),
    [
        (
            unsigned_tx("eip1559", 1, TOKEN, 0, APPROVE + bytes(64)),
            "unknown_call",
        ),
        (unsigned_tx("eip1559", 1, TOKEN, 0, erc20_transfer(PAYEE, 5) + b"\0"), "calldata_length"),
        (b"\x02" + rlp.encode([1, 0, 1, 1, 21000, b"", 0, b"", []]), "contract_creation"),
        (b"\x02\xc1\x80", "bad_field_count"),
    ],
)
def test_undecodable_transactions(signer: Signer, tx: bytes, problem: str) -> None:
    error = assert_refused_and_audited(
        signer, envelope(body(tx=tx), signer.parties.core), "TX_DECODE_FAILED"
    )
    assert error.metadata["problem"] == problem


def test_policy_refusals(signer: Signer) -> None:
    core = signer.parties.core
    assert_refused_and_audited(
        signer, envelope(body(destination=STRANGER), core), "DESTINATION_NOT_ALLOWED"
    )
    assert_refused_and_audited(signer, envelope(body(amount=2 * 10**18), core), "OVER_TX_CAP")
    # Shape-valid requests (the purpose holds) that no rule allows:
    gas = body(purpose=signer_pb2.PURPOSE_GAS_FUNDING, destination=hd_address(signer, 3))
    gas.intent.destination_hd_index = 3
    assert_refused_and_audited(signer, envelope(gas, core), "POLICY_NO_MATCH")
    assert_refused_and_audited(signer, envelope(body(key_id="hot-9"), core), "POLICY_NO_MATCH")
    sweep = body(key_id="hd:3", purpose=signer_pb2.PURPOSE_SWEEP, destination=TREASURY)
    adapters = signer_pb2_grpc.SignerServiceStub(channel(signer.port, signer.certs, "adapters"))
    assert_refused_and_audited(
        signer, envelope(sweep, signer.parties.adapters, "adapters"), "POLICY_NO_MATCH", adapters
    )


def test_approvals_are_required_then_accepted(signer: Signer) -> None:
    core, approvers = signer.parties.core, signer.parties.approvers
    big = body(amount=6 * 10**17)
    error = assert_refused_and_audited(signer, envelope(big, core), "APPROVALS_REQUIRED")
    assert error.metadata == {
        "rule": "large ETH payouts",
        "approvers": "alice,bob,carol",
        "threshold": "2",
        "have": "0",
    }
    one = envelope(big, core, approvers={"carol": approvers["carol"]})
    assert assert_refused_and_audited(signer, one, "APPROVALS_REQUIRED").metadata["have"] == "1"
    two = envelope(big, core, approvers={"carol": approvers["carol"], "alice": approvers["alice"]})
    check_signed(signer, two, signer.stub.Sign(two, timeout=20), hot_address(signer))
    assert signer.audit()[-1]["detail"]["approved_by"] == "alice,carol"


def test_velocity_cap_over_several_requests(signer: Signer) -> None:
    core = signer.parties.core
    for amount in (400, 400, 200):
        signer.stub.Sign(envelope(body(asset=VELO, amount=amount), core), timeout=20)
    error = assert_refused_and_audited(
        signer, envelope(body(asset=VELO, amount=1), core), "OVER_VELOCITY_CAP"
    )
    assert (error.code, error.metadata["used"], error.metadata["cap"]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "1000",
        "1000",
    )


def test_concurrent_signs_are_all_correct_and_the_chain_verifies(signer: Signer) -> None:
    core, address = signer.parties.core, hot_address(signer)
    requests = [
        envelope(body(amount=10**12 + i, kind=("eip1559", "legacy")[i % 2]), core)
        for i in range(32)
    ]
    # 32 parallel requests on the velocity-capped asset too: exactly 10 of 100 fit under 1000.
    capped = [envelope(body(asset=VELO, amount=100, key_id="hot-1"), core) for _ in range(12)]
    before = len(signer.audit())

    def send(request: signer_pb2.SignRequest) -> signer_pb2.SignResponse | str:
        try:
            response: signer_pb2.SignResponse = signer.stub.Sign(request, timeout=60)
        except grpc.RpcError as exc:
            return rich(exc).reason
        return response

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(send, requests + capped))
    for request, response in zip(requests, results[:32], strict=True):
        assert isinstance(response, signer_pb2.SignResponse), response
        assert Account.recover_transaction(response.signed_transaction).lower() == address
        assert response.tx_hash == "0x" + keccak256(response.signed_transaction).hex()
        del request
    assert len({r.tx_hash for r in results[:32]}) == 32  # type: ignore[union-attr]
    # The velocity test above already used the whole cap, so none of these fit.
    assert results[32:] == ["OVER_VELOCITY_CAP"] * 12
    assert len(signer.audit()) == before + 44
    verified = cli(signer.token, signer.config, "audit", "verify", str(signer.db))
    assert verified.returncode == 0 and verified.stdout.startswith("OK: "), verified.stdout


def test_audit_unavailable_refuses_without_a_signature(signer: Signer) -> None:
    conn = sqlite3.connect(signer.db)
    conn.execute(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit "
        "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    conn.commit()
    try:
        before = len(signer.audit())
        error = refused(signer, envelope(body(), signer.parties.core))
        assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "AUDIT_UNAVAILABLE")
        error = refused(signer, envelope(body(destination=STRANGER), signer.parties.core))
        assert error.reason == "AUDIT_UNAVAILABLE"
        assert len(signer.audit()) == before
    finally:
        conn.execute("DROP TRIGGER no_audit")
        conn.commit()
        conn.close()
    signer.stub.Sign(envelope(body(), signer.parties.core), timeout=20)


def test_audit_verify_and_export_detect_tampering(signer: Signer, tmp_path: Path) -> None:
    for _ in range(3):
        signer.stub.Sign(envelope(body(), signer.parties.core), timeout=20)
    export = tmp_path / "audit.jsonl"
    assert cli(signer.token, signer.config, "audit", "export", "--out", str(export)).returncode == 0
    lines = export.read_text().splitlines()
    ok = cli(signer.token, signer.config, "audit", "verify", str(export))
    assert ok.returncode == 0 and f"head seq {len(lines)}" in ok.stdout, ok.stdout
    head = ok.stdout.split("hash ")[-1].strip()

    edit = """UPDATE audit SET record = replace(record, '"decision":"SIGNED"',
              '"decision":"REFUSED"') WHERE seq = (SELECT min(seq) FROM audit
              WHERE record LIKE '%"decision":"SIGNED"%')"""
    cases = {
        "edited": edit,
        "deleted": "DELETE FROM audit WHERE seq = 3",
        "reordered": "UPDATE audit SET seq = -seq WHERE seq IN (2, 3); "
        "UPDATE audit SET seq = 5 + seq WHERE seq IN (-2, -3)",
    }
    for name, sql in cases.items():
        copy = tmp_path / f"{name}.sqlite3"
        with (
            sqlite3.connect(f"file:{signer.db}?mode=ro", uri=True) as live,
            sqlite3.connect(copy) as dst,
        ):
            live.backup(dst)
            dst.executescript(sql)
        result = cli(signer.token, signer.config, "audit", "verify", str(copy))
        assert result.returncode == 1, (name, result.stdout)
        assert result.stdout.startswith("BROKEN: record at position"), result.stdout

    jsonl = tmp_path / "reordered.jsonl"
    jsonl.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    broken = cli(signer.token, signer.config, "audit", "verify", str(jsonl))
    assert broken.returncode == 1 and "position 2 (seq 3)" in broken.stdout, broken.stdout
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-1]) + "\n")
    assert cli(signer.token, signer.config, "audit", "verify", str(truncated)).returncode == 0
    anchored = cli(signer.token, signer.config, "audit", "verify", str(truncated), "--head", head)
    assert anchored.returncode == 1 and "anchored head" in anchored.stdout


def test_policy_reload_on_sighup(tmp_path: Path, certs: Path) -> None:
    token = SoftHsmToken(tmp_path / "softhsm").init()
    s = start_signer(token, tmp_path, certs, Parties())
    try:
        core = s.parties.core
        s.stub.Sign(envelope(body(destination=PAYEE), core), timeout=20)
        policy_file = tmp_path / "policy.toml"
        policy_file.write_text(POLICY.replace(f'"{PAYEE}", ', ""))
        os.kill(s.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "policy reloaded" not in (tmp_path / "signer.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_refused_and_audited(
            s, envelope(body(destination=PAYEE), core), "DESTINATION_NOT_ALLOWED"
        )
        reloaded_hash = s.audit()[-1]["policy_hash"]
        policy_file.write_text("rules = [")  # broken: kept out, the old policy stays
        os.kill(s.process.pid, signal.SIGHUP)
        while "policy reload refused" not in (tmp_path / "signer.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_refused_and_audited(
            s, envelope(body(destination=PAYEE), core), "DESTINATION_NOT_ALLOWED"
        )
        assert s.audit()[-1]["policy_hash"] == reloaded_hash
        s.stub.Sign(envelope(body(destination=PAYEE_2), core), timeout=20)
    finally:
        assert s.close() == 0
    # ...and a broken policy refuses the start.
    started = subprocess.run(
        [str(s.process.argv[0]), "--config", str(s.config), "serve"],
        capture_output=True,
        text=True,
        env={**os.environ, **token.env},
        timeout=60,
    )
    assert started.returncode == 2 and "policy" in started.stderr, started.stderr


def test_a_failed_handshake_leaves_the_log_one_json_object_per_line(signer: Signer) -> None:
    with (
        channel(signer.port, signer.certs, None) as anonymous,
        pytest.raises(grpc.RpcError),
    ):
        signer_pb2_grpc.SignerServiceStub(anonymous).Sign(
            envelope(body(), signer.parties.core), timeout=10
        )
    stray = [
        line
        for line in signer.process.log_path.read_text().splitlines()
        if line.strip() and not line.startswith("{")
    ]
    assert stray == []
