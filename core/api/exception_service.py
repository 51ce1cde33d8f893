"""ExceptionService: the gRPC edge of core/reconcile/exceptions.py, for platform keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import assert_never

import grpc

from core import reasons
from core.api import validate
from core.api.auth import Authenticator
from core.api.errors import rpc
from core.errors import Code, Refusal, exists, invalid, precondition
from core.reconcile import exceptions
from core.reconcile.render import exception_entry as render
from kassa.core.v1 import exception_pb2 as pb
from kassa.core.v1 import exception_pb2_grpc as pb_grpc

_NAME = re.compile(r"exceptions/([0-9a-f]{20})")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_REASON_LEN = 500
_ACTIONS = {
    pb.RESOLVE_ACTION_ACKNOWLEDGE: exceptions.Action.ACKNOWLEDGE,
    pb.RESOLVE_ACTION_REBASELINE: exceptions.Action.REBASELINE,
}
_STATES = {pb.EXCEPTION_STATE_OPEN: "open", pb.EXCEPTION_STATE_RESOLVED: "resolved"}


def _refused(refused: exceptions.ResolveRefused, name: str) -> Refusal:
    # Each refusal spelled out with its catalogued reason (core/reasons.py), so
    # tests/unit/test_reasons.py can follow every reason this edge returns.
    match refused.refusal:
        case exceptions.Refusal.NOT_FOUND:
            return Refusal(
                Code.NOT_FOUND,
                reasons.EXCEPTION_NOT_FOUND,
                refused.message,
                metadata={"name": name},
            )
        case exceptions.Refusal.ALREADY_RESOLVED:
            return precondition(reasons.EXCEPTION_ALREADY_RESOLVED, refused.message, name=name)
        case exceptions.Refusal.NOT_REBASELINABLE:
            return precondition(reasons.EXCEPTION_NOT_REBASELINABLE, refused.message, name=name)
        case exceptions.Refusal.REQUEST_ID_REUSED:
            return exists(reasons.REQUEST_ID_REUSED, refused.message, name=name)
        case unreachable:
            assert_never(unreachable)


class ExceptionService(pb_grpc.ExceptionServiceServicer):
    def __init__(
        self,
        entries: exceptions.Exceptions,
        auth: Authenticator,
        clock: Callable[[], datetime],
        # `[support] require_second_approval`: a re-baseline then goes through
        # SupportService.Rebaseline, where another operator must approve it.
        rebaseline_needs_approval: bool = False,
    ) -> None:
        self.entries = entries
        self.auth = auth
        self.clock = clock
        self.rebaseline_needs_approval = rebaseline_needs_approval

    @rpc
    async def ListExceptions(
        self, request: pb.ListExceptionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListExceptionsResponse:
        state = _STATES.get(request.state, "open")
        binding = f"exceptions|{state}"
        after = None
        if request.page_token:
            after = validate.decode_page_token(request.page_token, binding)
            if after is None:
                raise invalid([("page_token", "not a token of this listing")])
        await self.auth.require(context, "exceptions:read", None)
        limit = validate.page_size(request.page_size)
        rows = await self.entries.page(state, after, limit + 1)
        answer = pb.ListExceptionsResponse(exceptions=[render(r) for r in rows[:limit]])
        if len(rows) > limit:
            last = rows[limit - 1]
            answer.next_page_token = validate.encode_page_token(
                last["create_time"], last["id"], binding
            )
        return answer

    @rpc
    async def ResolveException(
        self, request: pb.ResolveExceptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveExceptionResponse:
        violations: list[tuple[str, str]] = []
        match = _NAME.fullmatch(request.name)
        if match is None:
            violations.append(("name", "must be exceptions/{id}"))
        if request.action not in _ACTIONS:
            violations.append(("action", "ACKNOWLEDGE or REBASELINE"))
        if not request.reason.strip() or len(request.reason) > MAX_REASON_LEN:
            violations.append(("reason", f"required, at most {MAX_REASON_LEN} characters"))
        if request.request_id and not _REQUEST_ID.fullmatch(request.request_id):
            violations.append(("request_id", "1-128 of A-Z a-z 0-9 . _ : -"))
        if violations:
            raise invalid(violations)
        assert match is not None
        principal = await self.auth.require(context, "exceptions:write", None)
        if request.action == pb.RESOLVE_ACTION_REBASELINE and self.rebaseline_needs_approval:
            raise precondition(
                reasons.REBASELINE_NEEDS_APPROVAL,
                "re-baselining needs a second operator here ([support] "
                "require_second_approval): ask for it with SupportService.Rebaseline",
                name=request.name,
            )
        resolution = exceptions.Resolution(
            match.group(1),
            _ACTIONS[request.action],
            request.reason,
            principal.actor,
            request.request_id,
        )
        try:
            row = await self.entries.resolve(resolution, self.clock())
        except exceptions.ResolveRefused as refused:
            raise _refused(refused, request.name) from None
        return pb.ResolveExceptionResponse(exception=render(row))
