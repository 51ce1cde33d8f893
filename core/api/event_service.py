"""EventService handlers."""

from __future__ import annotations

import re

import grpc

from core.api import validate
from core.api.auth import Authenticator, authorize
from core.api.errors import invalid, rpc
from core.errors import Code, Refusal
from core.events.settings import StreamSettings
from core.events.stream import (
    BATCH,
    POSITIONS,
    ConsumerTooSlow,
    OutboxNotifier,
    Tail,
    follow,
    relay,
)
from kassa.core.v1 import event_pb2 as pb
from kassa.core.v1 import event_pb2_grpc as pb_grpc

_TYPE = re.compile(r"[a-z_]+\.[a-z_]+")


def _serialize(message: bytes | pb.StreamEventsResponse) -> bytes:
    """StreamEvents writes pre-serialized responses (render.stream_response_bytes)."""
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()


def add_to_server(servicer: EventService, server: grpc.aio.Server) -> None:
    """As the generated add_EventServiceServicer_to_server, with a serializer
    that passes the stream's pre-serialized responses through."""
    handlers = {
        "StreamEvents": grpc.unary_stream_rpc_method_handler(
            servicer.StreamEvents,
            request_deserializer=pb.StreamEventsRequest.FromString,
            response_serializer=_serialize,
        ),
    }
    service = pb.DESCRIPTOR.services_by_name["EventService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


class EventService(pb_grpc.EventServiceServicer):
    def __init__(
        self,
        tail: Tail,
        notifier: OutboxNotifier,
        auth: Authenticator,
        settings: StreamSettings | None = None,
    ) -> None:
        # The process's shared tail of the outbox, rendering with
        # core.render.events.stream_response_bytes (core/server.py makes it).
        self.tail = tail
        self.notifier = notifier
        self.auth = auth
        self.settings = settings or StreamSettings()

    # Writes with context.write rather than yielding, so that a write that
    # does not complete (a consumer that stopped reading) can be timed out.
    @rpc
    async def StreamEvents(  # type: ignore[override]
        self, request: pb.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        principal = await self.auth.principal(context)
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations) if request.parent else None
        for i, t in enumerate(request.types):
            if not _TYPE.fullmatch(t):
                violations.append((f"types[{i}]", "must look like invoice.paid"))
        if violations:
            raise invalid(violations)
        # A merchant's key reads only its own stream; a platform key may read every merchant's.
        authorize(principal, "events:read", merchant)

        with POSITIONS.opened(request.after_sequence) as token:
            await self._stream(request, context, merchant, token)

    async def _stream(
        self,
        request: pb.StreamEventsRequest,
        context: grpc.aio.ServicerContext,
        merchant: str | None,
        token: int,
    ) -> None:
        source = follow(
            self.notifier,
            self.tail,
            request.after_sequence,
            merchant,
            list(request.types),
            max(1, min(BATCH, self.settings.buffer_events // 2)),
            token,
        )

        async def send(message: object) -> None:
            assert isinstance(message, bytes)
            await context.write(message)

        try:
            await relay(
                source,
                send,
                self.settings.buffer_events,
                self.settings.stall_timeout_s,
            )
        except ConsumerTooSlow as slow:
            raise Refusal(
                Code.RESOURCE_EXHAUSTED,
                "CONSUMER_TOO_SLOW",
                f"the consumer stopped reading for {self.settings.stall_timeout_s:g} s; "
                "resume with after_sequence set to the last event it processed",
                metadata={
                    "last_sent_sequence": str(slow.last_sent_sequence),
                    "buffered_events": str(slow.buffered),
                },
            ) from None
