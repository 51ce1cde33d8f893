"""ReconciliationService: the gRPC edge of core/reconcile, for platform keys."""

from __future__ import annotations

import re
from datetime import UTC

import grpc

from core import reasons
from core.api import validate
from core.api.auth import Authenticator
from core.api.errors import Code, Refusal, invalid, not_found, rpc
from core.api.leader import FenceOf, leader_fence, not_leader
from core.leadership.fence import FencedError
from core.reconcile.runner import ReconcileError, Reconciler, ReconcileUnavailable
from core.reconcile.store import Reconciliations
from kassa.core.v1 import reconciliation_pb2 as pb
from kassa.core.v1 import reconciliation_pb2_grpc as pb_grpc

_NAME = re.compile(r"reconciliations/([0-9a-f]{20})")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ReconciliationService(pb_grpc.ReconciliationServiceServicer):
    def __init__(
        self,
        reconciler: Reconciler,
        runs: Reconciliations,
        auth: Authenticator,
        fence_of: FenceOf,
    ) -> None:
        self.reconciler = reconciler
        self.runs = runs
        self.auth = auth
        self.fence_of = fence_of  # this replica's fence of `reconcile` (core/api/leader.py)

    async def _get(self, run_id: str) -> pb.Reconciliation | None:
        return await self.runs.load(run_id)

    @rpc
    async def RunReconciliation(
        self, request: pb.RunReconciliationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunReconciliationResponse:
        violations: list[tuple[str, str]] = []
        if self.reconciler.chain(request.chain) is None:
            violations.append(("chain", "a configured chain (CAIP-2, e.g. eip155:1)"))
        if request.request_id and not _REQUEST_ID.fullmatch(request.request_id):
            violations.append(("request_id", "1-128 of A-Z a-z 0-9 . _ : -"))
        if violations:
            raise invalid(violations)
        principal = await self.auth.require(context, "reconcile:write", None)
        fence = await leader_fence(self.fence_of, "reconcile")
        try:
            run_id = await self.reconciler.run_once(
                request.chain, principal.actor, request.request_id, request.incremental, fence
            )
        except FencedError:
            raise not_leader("reconcile") from None
        except ReconcileUnavailable as exc:
            raise Refusal(Code.UNAVAILABLE, reasons.DEPENDENCY_UNAVAILABLE, str(exc)) from None
        except ReconcileError as exc:
            raise Refusal(Code.FAILED_PRECONDITION, reasons.NOT_RECONCILABLE, str(exc)) from None
        run = await self._get(run_id)
        assert run is not None
        if run.chain != request.chain:
            raise Refusal(
                Code.ALREADY_EXISTS,
                "REQUEST_ID_REUSED",
                "request_id was used for a different request",
                metadata={"request_id": request.request_id},
            )
        return pb.RunReconciliationResponse(reconciliation=run)

    @rpc
    async def GetReconciliation(
        self, request: pb.GetReconciliationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReconciliationResponse:
        match = _NAME.fullmatch(request.name)
        if match is None:
            raise invalid([("name", "must be reconciliations/{id}")])
        await self.auth.require(context, "reconcile:read", None)
        run = await self._get(match.group(1))
        if run is None:
            raise not_found("reconciliation", request.name)
        return pb.GetReconciliationResponse(reconciliation=run)

    @rpc
    async def ListReconciliations(
        self, request: pb.ListReconciliationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReconciliationsResponse:
        binding = f"reconciliations|{request.chain}"
        before = None
        if request.page_token:
            before = validate.decode_page_token(request.page_token, binding)
            if before is None:
                raise invalid([("page_token", "not a token of this listing")])
        await self.auth.require(context, "reconcile:read", None)
        limit = validate.page_size(request.page_size)
        runs = await self.runs.page(request.chain, before, limit + 1)
        answer = pb.ListReconciliationsResponse(reconciliations=runs[:limit])
        if len(runs) > limit:
            last = runs[limit - 1]
            answer.next_page_token = validate.encode_page_token(
                last.start_time.ToDatetime(tzinfo=UTC),
                last.name.rpartition("/")[2],
                binding,
            )
        return answer
