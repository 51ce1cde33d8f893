"""The signer as a real process on loopback plaintext (server.insecure_loopback_only): health,
reflection, key lookups, Sign envelope refusals, SIGTERM. mTLS and the full pipeline are in
test_signer_sign.py."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.ports import free_port
from localstack.procs import ManagedProcess, console_script
from localstack.softhsm import SoftHsmToken
from signer.envelope.digest import body_digest
from signer.hd.bip32 import parse_extended_key
from signer.secp256k1 import address_of

SIGNER = console_script("kassa-signer")
SERVICE = "kassa.signer.v1.SignerService"
CALLER = Ed25519PrivateKey.generate()


ETH = "eip155:1/slip44:60"
# The smallest policy a default-deny signer loads: fee caps, a cap, a velocity cap, pins.
SAFE_POLICY = f"""
[chains."eip155:1"]
max_fee_per_gas = "100000000000"
max_gas = 200000
max_total_fee = "10000000000000000"
[caps]
"{ETH}" = "1000000000000000000"
[[velocity]]
key_id = "hot-1"
asset = "{ETH}"
max_amount = "1000000000000000000"
[[rules]]
name = "payouts"
key_id = "hot-1"
purpose = "PAYOUT"
chain = "eip155:1"
asset = "{ETH}"
action = "allow"
"""


class Running:
    def __init__(self, process: ManagedProcess, channel: grpc.Channel, xpub: str) -> None:
        self.process = process
        self.channel = channel
        self.stub = signer_pb2_grpc.SignerServiceStub(channel)
        self.xpub = xpub


@pytest.fixture
def signer(softhsm: SoftHsmToken, tmp_path: Path) -> Iterator[Running]:
    port = free_port()
    caller_public = CALLER.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    config = tmp_path / "signer.toml"
    (tmp_path / "policy.toml").write_text(SAFE_POLICY)
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\ninsecure_loopback_only = true\n'
        f'[hsm]\nmodule = "{softhsm.module}"\npin_file = "{softhsm.pin_file}"\n'
        '[state]\ndir = "state"\n[policy]\nfile = "policy.toml"\n'
        f'[[callers]]\nkey_id = "core"\nrole = "payments"\ned25519_public_key = "{caller_public}"\n'
    )
    init = subprocess.run(
        [SIGNER, "--config", str(config), "keys", "init"],
        capture_output=True,
        text=True,
        env={**os.environ, **softhsm.env},
        timeout=60,
        check=True,
    )
    process = ManagedProcess(
        "signer",
        [SIGNER, "--config", str(config), "serve"],
        tmp_path / "signer.log",
        port=port,
        env=softhsm.env,
    ).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Running(process, channel, init.stdout.strip())
    finally:
        channel.close()
        process.stop()


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def test_health_and_reflection(signer: Running) -> None:
    health = health_pb2_grpc.HealthStub(signer.channel)
    for service in ("", SERVICE):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(signer.channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert SERVICE in names


def test_get_public_key_and_list_keys(signer: Running) -> None:
    hot = signer.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hot-1"), timeout=5).key
    assert hot.kind == signer_pb2.KEY_KIND_HOT
    assert len(hot.public_key) == 65 and hot.public_key[0] == 4
    assert hot.address == address_of(hot.public_key)
    assert hot.attributes["sensitive"] == "true"
    assert hot.attributes["extractable"] == "false"

    hd = signer.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hd"), timeout=5).key
    assert hd.kind == signer_pb2.KEY_KIND_HD_ACCOUNT
    assert hd.xpub == signer.xpub
    assert parse_extended_key(hd.xpub).depth == 3
    assert hd.derivation_path == "m/44'/60'/0'"
    assert hd.attributes["kek.extractable"] == "false"

    keys = signer.stub.ListKeys(signer_pb2.ListKeysRequest(), timeout=5).keys
    assert {k.key_id for k in keys} == {"hot-1", "hd"}

    with pytest.raises(grpc.RpcError) as missing:
        signer.stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="hot-9"), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert _error_info(missing.value).reason == "KEY_NOT_FOUND"


def _sign(signer: Running, envelope: signer_pb2.SignedEnvelope) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        signer.stub.Sign(signer_pb2.SignRequest(envelope=envelope), timeout=5)
    return refused.value


def test_sign_on_loopback_plaintext_checks_the_envelope(signer: Running) -> None:
    """Without [tls] (insecure_loopback_only) the envelope is still the caller's proof."""
    body = signer_pb2.SignRequestBody(
        request_id="r1", key_id="hot-1", chain="eip155:1"
    ).SerializeToString()
    good = signer_pb2.SignedEnvelope(
        body=body, caller_key_id="core", caller_signature=CALLER.sign(body_digest(body))
    )
    error = _sign(signer, good)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = _error_info(error)
    assert (info.reason, info.domain) == ("BODY_INVALID", "kassa.signer")
    assert info.metadata["field"] == "unsigned_transaction"

    forged = signer_pb2.SignedEnvelope(
        body=body,
        caller_key_id="core",
        caller_signature=Ed25519PrivateKey.generate().sign(body_digest(body)),
    )
    error = _sign(signer, forged)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _error_info(error).reason == "SIGNATURE_INVALID"

    undomained = signer_pb2.SignedEnvelope(
        body=body, caller_key_id="core", caller_signature=CALLER.sign(body)
    )
    assert _error_info(_sign(signer, undomained)).reason == "SIGNATURE_INVALID"

    stranger = signer_pb2.SignedEnvelope(
        body=body, caller_key_id="mallory", caller_signature=CALLER.sign(body_digest(body))
    )
    assert _error_info(_sign(signer, stranger)).reason == "CALLER_UNKNOWN"


def test_a_refused_sign_returns_the_request_id_the_caller_sent(signer: Running) -> None:
    """The access log's id comes back with a refusal too (an abort replaces the
    trailers), so a refusal quoted by the core matches the signer's audit log line."""
    body = signer_pb2.SignRequestBody(
        request_id="r-id", key_id="hot-1", chain="eip155:1"
    ).SerializeToString()
    stranger = signer_pb2.SignedEnvelope(
        body=body, caller_key_id="mallory", caller_signature=CALLER.sign(body_digest(body))
    )
    sent = "signer-error-51c0"
    with pytest.raises(grpc.RpcError) as refused:
        signer.stub.Sign(
            signer_pb2.SignRequest(envelope=stranger),
            timeout=5,
            metadata=(("x-request-id", sent),),
        )
    assert _error_info(refused.value).reason == "CALLER_UNKNOWN"
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers.get("x-request-id") == sent


def test_sigterm_stops_cleanly_with_json_logs(signer: Running) -> None:
    signer.stub.ListKeys(signer_pb2.ListKeysRequest(), timeout=5)
    assert signer.process.stop() == 0
    lines = [json.loads(line) for line in signer.process.log_path.read_text().splitlines()]
    messages = [line["msg"] for line in lines]
    # The audit head is logged last, for operations to anchor outside the host.
    assert "serving" in messages and messages[-2:] == ["stopped", "audit head"]
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)


def test_plaintext_off_loopback_or_without_the_flag_refuses_to_start(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    (tmp_path / "policy.toml").write_text("")
    for server in ('listen = "127.0.0.1:1"', 'listen = "0.0.0.0:1"\ninsecure_loopback_only = true'):
        config = tmp_path / "plain.toml"
        config.write_text(
            f'[server]\n{server}\n[hsm]\nmodule = "{softhsm.module}"\n'
            f'pin_file = "{softhsm.pin_file}"\n[policy]\nfile = "policy.toml"\n'
        )
        result = subprocess.run(
            [SIGNER, "--config", str(config), "serve"],
            capture_output=True,
            text=True,
            env={**os.environ, **softhsm.env},
            timeout=60,
        )
        assert result.returncode == 2
        assert "[tls] is required" in result.stderr
