"""MerchantService handlers (platform keys with merchants:admin)."""

from __future__ import annotations

import re

import asyncpg
import grpc

from core import idempotency
from core.api import validate
from core.api.auth import Authenticator
from core.api.errors import invalid, rpc
from core.api.render import timestamp
from core.merchants import Merchants
from kassa.core.v1 import merchant_pb2 as pb
from kassa.core.v1 import merchant_pb2_grpc as pb_grpc

_MERCHANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_KEY_NAME = re.compile(r"^merchants/([a-z0-9][a-z0-9-]{0,62})/apiKeys/([0-9a-f]{16})$")


def _merchant(row: asyncpg.Record) -> pb.Merchant:
    return pb.Merchant(
        name=f"merchants/{row['id']}",
        display_name=row["display_name"],
        create_time=timestamp(row["create_time"]),
    )


def _key(row: asyncpg.Record) -> pb.ApiKey:
    key = pb.ApiKey(
        name=f"merchants/{row['merchant_id']}/apiKeys/{row['id']}",
        scopes=row["scopes"],
        description=row["description"],
        create_time=timestamp(row["create_time"]),
    )
    if row["revoke_time"] is not None:
        key.revoke_time.CopyFrom(timestamp(row["revoke_time"]))
    return key


class MerchantService(pb_grpc.MerchantServiceServicer):
    def __init__(self, merchants: Merchants, auth: Authenticator) -> None:
        self.merchants = merchants
        self.auth = auth

    async def _admin(self, context: grpc.aio.ServicerContext) -> None:
        await self.auth.require(context, "merchants:admin", None)

    @rpc
    async def CreateMerchant(
        self, request: pb.CreateMerchantRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateMerchantResponse:
        await self._admin(context)
        violations: validate.Violations = []
        if not _MERCHANT_ID.match(request.merchant_id):
            violations.append(("merchant_id", "1-63 lowercase letters, digits and dashes"))
        if not request.display_name.strip() or len(request.display_name) > 200:
            violations.append(("display_name", "is required, at most 200 characters"))
        request_id = idempotency.request_id_of(request.request_id, violations)
        if violations:
            raise invalid(violations)
        row = await self.merchants.create(
            request.merchant_id, request.display_name, request_id, idempotency.request_hash(request)
        )
        return pb.CreateMerchantResponse(merchant=_merchant(row))

    @rpc
    async def GetMerchant(
        self, request: pb.GetMerchantRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMerchantResponse:
        await self._admin(context)
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.name, violations, "name")
        if violations:
            raise invalid(violations)
        return pb.GetMerchantResponse(merchant=_merchant(await self.merchants.get(merchant)))

    @rpc
    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        await self._admin(context)
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations)
        if violations:
            raise invalid(violations)
        row, token = await self.merchants.create_key(
            merchant, list(request.scopes), request.description
        )
        return pb.CreateApiKeyResponse(api_key=_key(row), secret=token)

    @rpc
    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        await self._admin(context)
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations)
        if violations:
            raise invalid(violations)
        return pb.ListApiKeysResponse(
            api_keys=[_key(r) for r in await self.merchants.list_keys(merchant)]
        )

    @rpc
    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeApiKeyResponse:
        await self._admin(context)
        match = _KEY_NAME.match(request.name)
        if match is None:
            raise invalid([("name", "must be merchants/{merchant}/apiKeys/{key}")])
        row = await self.merchants.revoke_key(match.group(1), match.group(2))
        return pb.RevokeApiKeyResponse(api_key=_key(row))
