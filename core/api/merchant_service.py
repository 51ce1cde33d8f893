"""MerchantService handlers (platform keys with merchants:admin)."""

from __future__ import annotations

import grpc

from core import idempotency, names
from core.api import page_tokens, validate
from core.api.auth import Authenticator
from core.api.errors import invalid, rpc
from core.merchants import Merchants
from core.render import merchants as render
from kassa.core.v1 import merchant_pb2 as pb
from kassa.core.v1 import merchant_pb2_grpc as pb_grpc

# The listing has no parent or filters: its tokens are bound to it alone.
_MERCHANTS_BINDING = "merchants"


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
        if not names.is_merchant_id(request.merchant_id):
            violations.append(("merchant_id", "1-63 lowercase letters, digits and dashes"))
        if not request.display_name.strip() or len(request.display_name) > 200:
            violations.append(("display_name", "is required, at most 200 characters"))
        request_id = idempotency.request_id_of(request.request_id, violations)
        if violations:
            raise invalid(violations)
        row = await self.merchants.create(
            request.merchant_id, request.display_name, request_id, idempotency.request_hash(request)
        )
        return pb.CreateMerchantResponse(merchant=render.merchant(row))

    @rpc
    async def GetMerchant(
        self, request: pb.GetMerchantRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMerchantResponse:
        await self._admin(context)
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.name, violations, "name")
        if violations:
            raise invalid(violations)
        return pb.GetMerchantResponse(merchant=render.merchant(await self.merchants.get(merchant)))

    @rpc
    async def ListMerchants(
        self, request: pb.ListMerchantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMerchantsResponse:
        await self._admin(context)
        violations: validate.Violations = []
        if request.page_size < 0:
            violations.append(("page_size", "must not be negative"))
        after = ""
        if request.page_token:
            # The position is the last merchant id shown, sealed to this caller.
            opened = page_tokens.open_token(request.page_token, _MERCHANTS_BINDING)
            if opened is None:
                violations.append(("page_token", "not a token of this listing"))
            else:
                after = opened
        if violations:
            raise invalid(violations)
        limit = validate.page_size(request.page_size)
        rows = await self.merchants.page(after, limit + 1)
        answer = pb.ListMerchantsResponse(merchants=[render.merchant(r) for r in rows[:limit]])
        if len(rows) > limit:
            answer.next_page_token = page_tokens.seal(rows[limit - 1]["id"], _MERCHANTS_BINDING)
        return answer

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
        return pb.CreateApiKeyResponse(api_key=render.api_key(row), secret=token)

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
            api_keys=[render.api_key(r) for r in await self.merchants.list_keys(merchant)]
        )

    @rpc
    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeApiKeyResponse:
        await self._admin(context)
        parsed = names.parse_api_key(request.name)
        if parsed is None:
            raise invalid([("name", "must be merchants/{merchant}/apiKeys/{key}")])
        row = await self.merchants.revoke_key(*parsed)
        return pb.RevokeApiKeyResponse(api_key=render.api_key(row))
