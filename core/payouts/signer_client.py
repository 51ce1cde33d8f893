"""The core's side of the signer boundary: build a SignRequestBody once, sign
the envelope with the core's Ed25519 key, call SignerService.Sign over mTLS.

A body is serialized exactly once and stored; every retry resends those bytes
(same request id and body → the signer answers its first response again).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from core.telemetry.rpc import RequestIdClient
from kassa.signer.v1 import signer_pb2, signer_pb2_grpc

DOMAIN = b"kassa.signer.v1.SignRequestBody\x00"
PURPOSES = {
    "PAYOUT": signer_pb2.PURPOSE_PAYOUT,
    "REFUND": signer_pb2.PURPOSE_REFUND,
    "SWEEP": signer_pb2.PURPOSE_SWEEP,
    "GAS_FUNDING": signer_pb2.PURPOSE_GAS_FUNDING,
    "NONCE_FILL": signer_pb2.PURPOSE_NONCE_FILL,
}
# Refusals that no retry of the same body can cure without a human (policy)
# — the payout waits, visibly, with the reason.
POLICY_REASONS = frozenset(
    {
        "APPROVALS_REQUIRED",
        "OVER_TX_CAP",
        "OVER_VELOCITY_CAP",
        "POLICY_NO_MATCH",
        "POLICY_BLOCKED",
        "DESTINATION_NOT_ALLOWED",
        "APPROVAL_INVALID",
        "CHAIN_NOT_CONFIGURED",
        "PURPOSE_KEY_MISMATCH",
        "SWEEP_NOT_TO_TREASURY",
        "GAS_FUNDING_NOT_NATIVE",
        "GAS_FUNDING_DESTINATION_MISMATCH",
        "OVER_GAS_FUNDING_CAP",
        "NONCE_FILL_NOT_EVM",
        "NONCE_FILL_HAS_DATA",
        "NONCE_FILL_VALUE_NOT_ZERO",
        "NONCE_FILL_NOT_TO_SELF",
        "FEE_OVER_CAP",
        "INTENT_MISMATCH",
        "INTENT_INVALID",
        "TX_DECODE_FAILED",
        "KEY_NOT_FOUND",
    }
)


def body_digest(body: bytes) -> bytes:
    return hashlib.sha256(DOMAIN + body).digest()


def load_ed25519(path: Path) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) key, or 64 hex characters of the raw 32-byte seed."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        key = load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(data.decode().strip()))


def _timestamp(t: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(t)
    return ts


def build_body(
    *,
    key_id: str,
    chain: str,
    unsigned_transaction: bytes,
    destination: str,
    asset: str,
    amount_base_units: int,
    purpose: str,
    reference: str,
    issue_time: datetime,
    lifetime_s: int,
    destination_hd_index: int | None = None,
) -> tuple[str, bytes]:
    """(request id, serialized body): the bytes to store and resend unchanged.

    destination_hd_index: GAS_FUNDING only, the deposit index whose address receives the
    gas; the signer derives that address itself and refuses any other destination."""
    request_id = str(uuid.uuid4())
    body = signer_pb2.SignRequestBody(
        request_id=request_id,
        key_id=key_id,
        chain=chain,
        unsigned_transaction=unsigned_transaction,
        intent=signer_pb2.Intent(
            destination=destination,
            asset=asset,
            amount=str(amount_base_units),
            purpose=PURPOSES[purpose],
            reference=reference,
            destination_hd_index=destination_hd_index,
        ),
        issue_time=_timestamp(issue_time),
        expire_time=_timestamp(issue_time + timedelta(seconds=lifetime_s)),
    )
    return request_id, body.SerializeToString(deterministic=True)


@dataclass(frozen=True)
class SignerRefusal(Exception):
    """The signer answered with a refusal (ErrorInfo domain kassa.signer)."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def is_policy(self) -> bool:
        return self.reason in POLICY_REASONS


def refusal_of(exc: grpc.aio.AioRpcError) -> SignerRefusal | None:
    """The ErrorInfo of a refusal; None for transport errors (retry later)."""
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return SignerRefusal(
                        exc.code(), info.reason, status.message, dict(info.metadata)
                    )
    return None


@dataclass(frozen=True)
class SignerTarget:
    target: str  # host:port
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    caller_key_id: str
    caller_key_file: Path
    # The name the signer's certificate carries, when target is an IP.
    server_name: str = ""
    # `serve` waits this long for the signer's first answer (core/signer_link).
    startup_timeout_s: float = 60.0
    # How often the running core checks the link (health "kassa.signer", kassa_core_signer_up).
    health_interval_s: float = 10.0


class SignerClient:
    def __init__(self, target: SignerTarget) -> None:
        self.target = target
        self.caller_key = load_ed25519(target.caller_key_file)
        # Reconnects at most 2 s apart (grpc's default backs off to 120 s): a signer
        # that comes back is seen within seconds, by payouts and the link check alike.
        options: list[tuple[str, str | int]] = [
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if target.server_name:
            options.append(("grpc.ssl_target_name_override", target.server_name))
        if target.ca_file is not None:
            credentials = grpc.ssl_channel_credentials(
                target.ca_file.read_bytes(),
                target.key_file.read_bytes() if target.key_file else None,
                target.cert_file.read_bytes() if target.cert_file else None,
            )
            self.channel = grpc.aio.secure_channel(
                target.target, credentials, options=options, interceptors=[RequestIdClient()]
            )
        else:  # development: a loopback signer with insecure_loopback_only
            self.channel = grpc.aio.insecure_channel(
                target.target, options=options, interceptors=[RequestIdClient()]
            )
        self.stub = signer_pb2_grpc.SignerServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def address_of(self, key_id: str) -> str:
        response = await self.stub.GetPublicKey(
            signer_pb2.GetPublicKeyRequest(key_id=key_id), timeout=10
        )
        return str(response.key.address).lower()

    async def sign(
        self, body: bytes, approvals: Sequence[tuple[str, bytes]] = ()
    ) -> signer_pb2.SignResponse:
        """Signs `body` as stored; raises SignerRefusal or grpc.aio.AioRpcError (transport)."""
        envelope = signer_pb2.SignedEnvelope(
            body=body,
            caller_key_id=self.target.caller_key_id,
            caller_signature=self.caller_key.sign(body_digest(body)),
            approvals=[signer_pb2.Approval(approver_key_id=k, signature=s) for k, s in approvals],
        )
        try:
            response: signer_pb2.SignResponse = await self.stub.Sign(
                signer_pb2.SignRequest(envelope=envelope), timeout=30
            )
            return response
        except grpc.aio.AioRpcError as exc:
            refusal = refusal_of(exc)
            if refusal is None:
                raise
            raise refusal from None
