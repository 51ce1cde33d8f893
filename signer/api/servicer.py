"""SignerService: key lookups, and Sign through the pipeline."""

from __future__ import annotations

import logging
from typing import TypeAlias

import grpc

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from signer import keyring
from signer.api.convert import key_message
from signer.api.errors import Refusal, abort
from signer.api.pipeline import MAX_KEY_ID_CHARS, SignPipeline, bounded
from signer.api.reasons import refusal
from signer.hsm.thread import HsmThread
from signer.hsm.token import TokenSession
from signer.tls.server import peer_identity

log = logging.getLogger("signer.api")

Context: TypeAlias = grpc.aio.ServicerContext[object, object]


class SignerServicer(signer_pb2_grpc.SignerServiceServicer):
    def __init__(
        self, thread: HsmThread, session: TokenSession, xpub: str | None, pipeline: SignPipeline
    ) -> None:
        self._thread = thread
        self._session = session
        self._xpub = xpub
        self._pipeline = pipeline

    async def GetPublicKey(
        self, request: signer_pb2.GetPublicKeyRequest, context: Context
    ) -> signer_pb2.GetPublicKeyResponse:
        await self._allow_key_read(context, "GetPublicKey")
        if len(request.key_id) > MAX_KEY_ID_CHARS:
            await abort(
                context,
                refusal(
                    "FIELD_TOO_LONG",
                    f"key_id exceeds {MAX_KEY_ID_CHARS} characters",
                    field="key_id",
                ),
            )
        key = await self._thread.acall(keyring.get_key, self._session, request.key_id, self._xpub)
        if key is None:
            await abort(
                context,
                Refusal(
                    grpc.StatusCode.NOT_FOUND,
                    "KEY_NOT_FOUND",
                    f"no key {request.key_id!r}",
                    {"key_id": request.key_id},
                ),
            )
            raise AssertionError("unreachable")  # context.abort raises
        return signer_pb2.GetPublicKeyResponse(key=key_message(key))

    async def ListKeys(
        self, request: signer_pb2.ListKeysRequest, context: Context
    ) -> signer_pb2.ListKeysResponse:
        await self._allow_key_read(context, "ListKeys")
        keys = await self._thread.acall(keyring.list_keys, self._session, self._xpub)
        return signer_pb2.ListKeysResponse(keys=[key_message(k) for k in keys])

    async def _allow_key_read(self, context: Context, method: str) -> None:
        """Key lookups tell which addresses hold funds: only allowlisted callers' certificates
        get answers; anyone else is refused and audited."""
        subject, _ = peer_identity(context)
        refused = await self._pipeline.key_read_refusal(method, subject)
        if refused is not None:
            log.info("key read refused", extra={"method": method, "reason": refused.reason})
            await abort(context, refused)
            raise AssertionError("unreachable")

    async def Sign(
        self, request: signer_pb2.SignRequest, context: Context
    ) -> signer_pb2.SignResponse:
        try:
            subject, tls13 = peer_identity(context)
            return await self._pipeline.sign(request.envelope, subject, tls13)
        except Refusal as refusal:
            log.info(
                "sign refused",
                extra={
                    "reason": refusal.reason,
                    "caller_key_id": bounded(request.envelope.caller_key_id, MAX_KEY_ID_CHARS),
                    **{f"meta_{k}": v for k, v in refusal.metadata.items()},
                },
            )
            await abort(context, refusal)
            raise AssertionError("unreachable") from None
