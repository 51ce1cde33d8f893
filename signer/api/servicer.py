"""SignerService: key lookups, and Sign — which this build always refuses after the envelope check."""

from __future__ import annotations

import hashlib
import logging
from typing import TypeAlias

import grpc

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from signer import keyring
from signer.api.convert import key_message
from signer.api.errors import Refusal, abort
from signer.envelope.digest import signature_valid
from signer.hsm.thread import HsmThread
from signer.hsm.token import TokenSession

log = logging.getLogger("signer.api")

Context: TypeAlias = grpc.aio.ServicerContext[object, object]


class SignerServicer(signer_pb2_grpc.SignerServiceServicer):
    def __init__(
        self, thread: HsmThread, session: TokenSession, xpub: str | None,
        callers: dict[str, bytes],
    ) -> None:
        self._thread = thread
        self._session = session
        self._xpub = xpub
        self._callers = callers

    async def GetPublicKey(
        self, request: signer_pb2.GetPublicKeyRequest, context: Context
    ) -> signer_pb2.GetPublicKeyResponse:
        key = await self._thread.acall(keyring.get_key, self._session, request.key_id, self._xpub)
        if key is None:
            await abort(context, Refusal(
                grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND", f"no key {request.key_id!r}",
                {"key_id": request.key_id},
            ))
            raise AssertionError("unreachable")  # context.abort raises
        return signer_pb2.GetPublicKeyResponse(key=key_message(key))

    async def ListKeys(
        self, request: signer_pb2.ListKeysRequest, context: Context
    ) -> signer_pb2.ListKeysResponse:
        keys = await self._thread.acall(keyring.list_keys, self._session, self._xpub)
        return signer_pb2.ListKeysResponse(keys=[key_message(k) for k in keys])

    async def Sign(
        self, request: signer_pb2.SignRequest, context: Context
    ) -> signer_pb2.SignResponse:
        refusal = self._decide(request.envelope)
        log.info("sign refused", extra={
            "reason": refusal.reason,
            "caller_key_id": request.envelope.caller_key_id,
            "body_sha256": hashlib.sha256(request.envelope.body).hexdigest(),
        })
        await abort(context, refusal)
        raise AssertionError("unreachable")

    def _decide(self, envelope: signer_pb2.SignedEnvelope) -> Refusal:
        if not envelope.body:
            return Refusal(grpc.StatusCode.INVALID_ARGUMENT, "ENVELOPE_EMPTY",
                           "the envelope carries no body")
        public_key = self._callers.get(envelope.caller_key_id)
        if public_key is None:
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "CALLER_UNKNOWN",
                           f"caller key {envelope.caller_key_id!r} is not allowlisted",
                           {"caller_key_id": envelope.caller_key_id})
        if not signature_valid(public_key, envelope.body, envelope.caller_signature):
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "SIGNATURE_INVALID",
                           "the caller signature does not verify over the envelope body",
                           {"caller_key_id": envelope.caller_key_id})
        # Decoding, replay guard, policy and audit are not built yet: refuse rather than sign blind.
        return Refusal(grpc.StatusCode.FAILED_PRECONDITION, "SIGNING_DISABLED",
                       "signing is disabled in this build of the signer")
