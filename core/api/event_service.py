"""EventService handlers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import grpc

from core.api import render, validate
from core.api.auth import Authenticator, authorize
from core.api.errors import ApiError, invalid
from core.events.stream import OutboxNotifier, follow
from kassa.core.v1 import event_pb2 as pb
from kassa.core.v1 import event_pb2_grpc as pb_grpc
from kassa.core.v1 import invoice_pb2

_TYPE = re.compile(r"^[a-z_]+\.[a-z_]+$")


class EventService(pb_grpc.EventServiceServicer):
    def __init__(self, pool: asyncpg.Pool, notifier: OutboxNotifier, auth: Authenticator) -> None:
        self.pool = pool
        self.notifier = notifier
        self.auth = auth

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        try:
            principal = await self.auth.principal(context)
            violations: validate.Violations = []
            merchant = validate.merchant_of(request.parent, violations) if request.parent else None
            for i, t in enumerate(request.types):
                if not _TYPE.match(t):
                    violations.append((f"types[{i}]", "must look like invoice.paid"))
            if violations:
                raise invalid(violations)
            # A merchant's key reads only its own stream; a platform key may read every merchant's.
            authorize(principal, "events:read", merchant)
            async for row in follow(
                self.pool, self.notifier, request.after_sequence, merchant, list(request.types)
            ):
                invoice = invoice_pb2.Invoice.FromString(row["payload"])
                yield pb.StreamEventsResponse(
                    event=pb.Event(
                        id=str(row["id"]),
                        sequence=row["sequence"],
                        type=row["type"],
                        create_time=render.timestamp(row["create_time"]),
                        invoice=invoice,
                    )
                )
        except ApiError as exc:
            await context.abort_with_status(exc.to_status())
