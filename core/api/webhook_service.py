"""WebhookService handlers: validate, authorise, call core.webhooks.endpoints."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Literal, assert_never, cast

import grpc

from core import idempotency, names
from core.api import page_tokens, validate
from core.api.auth import Authenticator
from core.api.errors import invalid, rpc
from core.render.timestamps import timestamp
from core.store.db import Row
from core.webhooks import targets
from core.webhooks.endpoints import (
    DeliveryFilter,
    EndpointChanges,
    Endpoints,
    RedeliverTarget,
    endpoint_name,
)
from kassa.core.v1 import webhook_pb2 as pb
from kassa.core.v1 import webhook_pb2_grpc as pb_grpc

_EVENT_TYPE = re.compile(r"[a-z_]+\.[a-z_*]+")
MAX_EVENT_TYPES = 100
RESOLVE_TIMEOUT_S = 5.0  # save-time resolution; a slow name is checked at each attempt
MAX_DESCRIPTION_LEN = 500
MAX_OVERLAP_S = 7 * 24 * 3600
UPDATABLE = frozenset({"url", "event_types", "description", "disabled"})
STATUS = {
    "pending": pb.WEBHOOK_DELIVERY_STATUS_PENDING,
    "succeeded": pb.WEBHOOK_DELIVERY_STATUS_SUCCEEDED,
    "failed": pb.WEBHOOK_DELIVERY_STATUS_FAILED,
    "cancelled": pb.WEBHOOK_DELIVERY_STATUS_CANCELLED,
}
_STATUS_NAME = {v: k for k, v in STATUS.items()}
# RedeliverWebhooksRequest's oneof target (the generated stubs type it as
# str; tests/unit/test_oneofs.py keeps this list equal to the proto's).
TargetKind = Literal["delivery", "event_id", "time_range"]


def endpoint_message(row: Row, now: datetime) -> pb.WebhookEndpoint:
    message = pb.WebhookEndpoint(
        name=endpoint_name(row["merchant_id"], row["id"]),
        url=row["url"],
        event_types=row["event_types"],
        description=row["description"],
        disabled=row["disabled"],
        create_time=timestamp(row["create_time"]),
        update_time=timestamp(row["update_time"]),
    )
    expire = row["previous_secret_expire_time"]
    if expire is not None and expire > now:
        message.previous_secret_expire_time.CopyFrom(timestamp(expire))
    return message


def delivery_message(row: Row, attempts: list[Row]) -> pb.WebhookDelivery:
    message = pb.WebhookDelivery(
        name=f"{endpoint_name(row['merchant_id'], row['endpoint_id'])}/deliveries/{row['id']}",
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        event_sequence=row["event_sequence"],
        status=STATUS[row["status"]],
        attempt_count=row["attempt_count"],
        create_time=timestamp(row["create_time"]),
        attempts=[
            pb.WebhookDeliveryAttempt(
                attempt_time=timestamp(a["attempt_time"]),
                status_code=a["status_code"] or 0,
                error=a["error"],
                duration_ms=a["duration_ms"],
            )
            for a in attempts
        ],
    )
    if row["status"] == "pending":
        message.next_attempt_time.CopyFrom(timestamp(row["next_attempt_time"]))
    return message


def check_endpoint_fields(
    endpoint: pb.WebhookEndpoint,
    allow_private: bool,
    violations: validate.Violations,
    paths: frozenset[str] = UPDATABLE,
) -> None:
    prefix = "webhook_endpoint."
    if "url" in paths:
        problem = targets.url_problem(endpoint.url, allow_private)
        if problem is not None:
            violations.append((prefix + "url", problem))
    if "event_types" in paths:
        if len(endpoint.event_types) > MAX_EVENT_TYPES:
            violations.append((prefix + "event_types", f"at most {MAX_EVENT_TYPES}"))
        for i, t in enumerate(endpoint.event_types):
            if not _EVENT_TYPE.fullmatch(t):
                violations.append((f"{prefix}event_types[{i}]", "must look like invoice.paid"))
    if "description" in paths and len(endpoint.description) > MAX_DESCRIPTION_LEN:
        violations.append((prefix + "description", f"at most {MAX_DESCRIPTION_LEN} characters"))


def request_id_of(value: str, violations: validate.Violations) -> str | None:
    return idempotency.request_id_of(value, violations)


def _page_token(sequence: int, delivery_id: uuid.UUID, binding: str) -> str:
    return page_tokens.seal(f"{sequence}:{delivery_id}", binding)


def _parse_page_token(
    token: str, binding: str, violations: validate.Violations
) -> tuple[int, uuid.UUID] | None:
    if not token:
        return None
    position = page_tokens.open_token(token, binding)
    try:
        if position is None:
            raise ValueError(token)
        sequence, _, delivery = position.partition(":")
        return int(sequence), uuid.UUID(delivery)
    except ValueError:
        violations.append(("page_token", "is not a token this list returned"))
        return None


def _deliveries_binding(request: pb.ListWebhookDeliveriesRequest) -> str:
    return f"deliveries|{request.parent}|{request.event_id}|{request.status}"


def _uuid(value: str, field: str, violations: validate.Violations) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        violations.append((field, "must be an id as returned by Kassa"))
        return None


class WebhookService(pb_grpc.WebhookServiceServicer):
    def __init__(
        self,
        endpoints: Endpoints,
        auth: Authenticator,
        allow_private_targets: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self.endpoints = endpoints
        self.auth = auth
        self.allow_private = allow_private_targets
        self.clock = clock

    def _endpoint_name(self, name: str, field: str = "name") -> tuple[str, str]:
        parsed = names.parse_webhook_endpoint(name)
        if parsed is None:
            raise invalid([(field, "must be merchants/{merchant}/webhookEndpoints/{endpoint}")])
        return parsed

    async def _resolves_public(self, url: str) -> None:
        """Save-time resolution: a name that resolves to an internal address now is refused."""
        try:
            problem = await asyncio.wait_for(
                targets.resolved_problem(url, self.allow_private), RESOLVE_TIMEOUT_S
            )
        except TimeoutError:
            problem = None  # checked again at every attempt
        if problem is not None:
            raise invalid([("webhook_endpoint.url", problem)])

    @rpc
    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateWebhookEndpointResponse:
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations)
        check_endpoint_fields(request.webhook_endpoint, self.allow_private, violations)
        request_id = request_id_of(request.request_id, violations)
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "webhooks:write", merchant)
        await self._resolves_public(request.webhook_endpoint.url)
        endpoint = request.webhook_endpoint
        row, secret = await self.endpoints.create(
            merchant,
            endpoint.url,
            list(endpoint.event_types),
            endpoint.description,
            endpoint.disabled,
            request_id,
            idempotency.request_hash(request),
        )
        return pb.CreateWebhookEndpointResponse(
            webhook_endpoint=endpoint_message(row, self.clock()), secret=secret
        )

    @rpc
    async def GetWebhookEndpoint(
        self, request: pb.GetWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWebhookEndpointResponse:
        merchant, endpoint_id = self._endpoint_name(request.name)
        await self.auth.require(context, "webhooks:read", merchant)
        row = await self.endpoints.get(merchant, endpoint_id)
        return pb.GetWebhookEndpointResponse(webhook_endpoint=endpoint_message(row, self.clock()))

    @rpc
    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWebhookEndpointsResponse:
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations)
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "webhooks:read", merchant)
        now = self.clock()
        rows = await self.endpoints.list_endpoints(merchant)
        return pb.ListWebhookEndpointsResponse(
            webhook_endpoints=[endpoint_message(r, now) for r in rows]
        )

    @rpc
    async def UpdateWebhookEndpoint(
        self, request: pb.UpdateWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateWebhookEndpointResponse:
        merchant, endpoint_id = self._endpoint_name(
            request.webhook_endpoint.name, "webhook_endpoint.name"
        )
        violations: validate.Violations = []
        paths = frozenset(request.update_mask.paths)
        if not paths or not paths <= UPDATABLE:
            violations.append(
                ("update_mask", f"paths among {', '.join(sorted(UPDATABLE))}, at least one")
            )
        check_endpoint_fields(request.webhook_endpoint, self.allow_private, violations, paths)
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "webhooks:write", merchant)
        if "url" in paths:
            await self._resolves_public(request.webhook_endpoint.url)
        endpoint = request.webhook_endpoint
        changes = EndpointChanges(
            url=endpoint.url if "url" in paths else None,
            event_types=list(endpoint.event_types) if "event_types" in paths else None,
            description=endpoint.description if "description" in paths else None,
            disabled=endpoint.disabled if "disabled" in paths else None,
        )
        now = self.clock()
        row = await self.endpoints.update(merchant, endpoint_id, changes, now)
        return pb.UpdateWebhookEndpointResponse(webhook_endpoint=endpoint_message(row, now))

    @rpc
    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteWebhookEndpointResponse:
        merchant, endpoint_id = self._endpoint_name(request.name)
        await self.auth.require(context, "webhooks:write", merchant)
        await self.endpoints.delete(merchant, endpoint_id, self.clock())
        return pb.DeleteWebhookEndpointResponse()

    @rpc
    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateWebhookSecretResponse:
        merchant, endpoint_id = self._endpoint_name(request.name)
        violations: validate.Violations = []
        if request.overlap_seconds > MAX_OVERLAP_S:
            violations.append(("overlap_seconds", f"at most {MAX_OVERLAP_S} (7 days)"))
        request_id = request_id_of(request.request_id, violations)
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "webhooks:write", merchant)
        now = self.clock()
        row, secret = await self.endpoints.rotate(
            merchant,
            endpoint_id,
            request.overlap_seconds or None,
            request_id,
            now,
            idempotency.request_hash(request),
        )
        return pb.RotateWebhookSecretResponse(
            webhook_endpoint=endpoint_message(row, now), secret=secret
        )

    @rpc
    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWebhookDeliveriesResponse:
        violations: validate.Violations = []
        parent = names.parse_webhook_endpoint(request.parent, allow_any=True)
        if parent is None:
            violations.append(
                ("parent", "must be merchants/{merchant}/webhookEndpoints/{endpoint} or …/-")
            )
        event_id = _uuid(request.event_id, "event_id", violations) if request.event_id else None
        if request.status and request.status not in _STATUS_NAME:
            violations.append(("status", "is not a WebhookDeliveryStatus"))
        if not 0 <= request.page_size <= validate.MAX_PAGE_SIZE:
            violations.append(("page_size", f"must be in 0..{validate.MAX_PAGE_SIZE}"))
        binding = _deliveries_binding(request)
        after = _parse_page_token(request.page_token, binding, violations)
        if violations or parent is None:
            raise invalid(violations)
        merchant, endpoint_id = parent
        await self.auth.require(context, "webhooks:read", merchant)
        page_size = request.page_size or validate.DEFAULT_PAGE_SIZE
        rows, attempts = await self.endpoints.deliveries(
            merchant,
            DeliveryFilter(
                None if endpoint_id == "-" else endpoint_id,
                event_id,
                _STATUS_NAME.get(request.status),
            ),
            page_size,
            after,
        )
        page = rows[:page_size]
        response = pb.ListWebhookDeliveriesResponse(
            deliveries=[delivery_message(r, attempts[r["id"]]) for r in page]
        )
        if len(rows) > page_size:
            response.next_page_token = _page_token(
                page[-1]["event_sequence"], page[-1]["id"], binding
            )
        return response

    @rpc
    async def RedeliverWebhooks(
        self, request: pb.RedeliverWebhooksRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeliverWebhooksResponse:
        merchant, endpoint_id = self._endpoint_name(request.parent, "parent")
        violations: validate.Violations = []
        which = cast("TargetKind | None", request.WhichOneof("target"))
        target = RedeliverTarget()
        match which:
            case "delivery":
                delivery = names.parse_delivery(request.delivery)
                if delivery is None or delivery[:2] != (merchant, endpoint_id):
                    violations.append(("delivery", "must be a delivery of the parent endpoint"))
                else:
                    target = RedeliverTarget(delivery_id=_uuid(delivery[2], "delivery", violations))
            case "event_id":
                target = RedeliverTarget(event_id=_uuid(request.event_id, "event_id", violations))
            case "time_range":
                start, end = request.time_range.start_time, request.time_range.end_time
                if not request.time_range.HasField("start_time") or not request.time_range.HasField(
                    "end_time"
                ):
                    violations.append(("time_range", "needs start_time and end_time"))
                elif end.ToDatetime() <= start.ToDatetime():
                    violations.append(("time_range.end_time", "must be after start_time"))
                else:
                    target = RedeliverTarget(
                        start_time=start.ToDatetime(tzinfo=self.clock().tzinfo),
                        end_time=end.ToDatetime(tzinfo=self.clock().tzinfo),
                    )
            case None:
                violations.append(("target", "one of delivery, event_id, time_range is required"))
            case _:
                assert_never(which)
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "webhooks:write", merchant)
        count = await self.endpoints.redeliver(merchant, endpoint_id, target, self.clock())
        return pb.RedeliverWebhooksResponse(delivery_count=count)
