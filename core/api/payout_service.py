"""PayoutService handlers: validation and authorization; core/payouts decides."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime

import grpc

from core import names
from core.api import validate
from core.api.auth import Authenticator
from core.api.errors import invalid, not_found, rpc
from core.api.leader import FenceOf, leader_fence, not_leader
from core.config import Config
from core.domain.money import AmountError, parse_base_units
from core.leadership.fence import FencedError
from core.payouts import destinations
from core.payouts.payouts import Payouts, PayoutSpec
from core.payouts.sweeps import Sweeper
from core.render import payouts as render
from core.store.db import Row
from kassa.core.v1 import payout_pb2 as pb
from kassa.core.v1 import payout_pb2_grpc as pb_grpc

_KEY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_REFERENCE_LEN = 200


def _common(
    destination: str, reference: str, request_id: str, violations: validate.Violations
) -> None:
    bad_destination = destinations.syntax(destination)
    if bad_destination is not None:
        violations.append(("destination", bad_destination))
    if len(reference) > MAX_REFERENCE_LEN:
        violations.append(("reference", f"at most {MAX_REFERENCE_LEN} characters"))
    if request_id and not names.is_request_id(request_id):
        violations.append(("request_id", "1-128 of A-Z a-z 0-9 . _ : -"))


def _amount(text: str, field: str, violations: validate.Violations) -> int | None:
    try:
        amount = parse_base_units(text)
    except AmountError as exc:
        violations.append((field, str(exc)))
        return None
    if amount <= 0:
        violations.append((field, "must be positive"))
        return None
    return amount


def _payout_name(name: str) -> tuple[str, str]:
    parsed = names.parse_payout(name)
    if parsed is None:
        raise invalid([("name", "must be merchants/{merchant}/payouts/{payout}")])
    return parsed


class PayoutService(pb_grpc.PayoutServiceServicer):
    def __init__(
        self,
        payouts: Payouts,
        config: Config,
        auth: Authenticator,
        clock: Callable[[], datetime],
    ) -> None:
        self.payouts = payouts
        self.config = config
        self.auth = auth
        self.clock = clock

    async def _answer(self, row: Row) -> pb.Payout:
        return (await self._render([row]))[0]

    async def _render(self, rows: Sequence[Row]) -> list[pb.Payout]:
        return [
            render.payout(v.row, v.transactions, v.approvals)
            for v in await self.payouts.views(rows)
        ]

    @rpc
    async def CreatePayout(
        self, request: pb.CreatePayoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePayoutResponse:
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations)
        if merchant:
            await self.auth.require(context, "payouts:write", merchant)
        p = request.payout
        asset = self.config.asset(p.asset.lower())
        if asset is None:
            violations.append(("payout.asset", "not a configured asset (CAIP-19)"))
        _common(p.destination, p.reference, request.request_id, violations)
        violations = [
            (f"payout.{f}" if f in ("destination", "reference") else f, d) for f, d in violations
        ]
        amount = _amount(p.amount, "payout.amount", violations)
        if violations:
            raise invalid(violations)
        assert asset is not None and amount is not None
        row = await self.payouts.create(
            PayoutSpec(
                merchant_id=merchant,
                kind="payout",
                chain=asset.chain,
                asset=asset.id,
                destination=p.destination.lower(),
                amount=amount,
                reference=p.reference,
                request_id=request.request_id or None,
            ),
            self.clock(),
        )
        return pb.CreatePayoutResponse(payout=await self._answer(row))

    @rpc
    async def CreateRefund(
        self, request: pb.CreateRefundRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateRefundResponse:
        violations: validate.Violations = []
        parsed = names.parse_invoice(request.invoice)
        if parsed is None:
            violations.append(("invoice", "must be merchants/{merchant}/invoices/{invoice}"))
        else:
            await self.auth.require(context, "payouts:write", parsed[0])
        _common(request.destination, request.reference, request.request_id, violations)
        amount = _amount(request.amount, "amount", violations) if request.amount else None
        if violations:
            raise invalid(violations)
        assert parsed is not None
        invoice = await self.payouts.refunded_invoice(parsed[0], parsed[1])
        if invoice is None:
            raise not_found("invoice", request.invoice)
        row = await self.payouts.create(
            PayoutSpec(
                merchant_id=parsed[0],
                kind="refund",
                chain=invoice["chain"],
                asset=invoice["asset"],
                destination=request.destination.lower(),
                amount=amount,
                reference=request.reference,
                request_id=request.request_id or None,
                invoice_id=parsed[1],
            ),
            self.clock(),
        )
        return pb.CreateRefundResponse(payout=await self._answer(row))

    @rpc
    async def GetPayout(
        self, request: pb.GetPayoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPayoutResponse:
        merchant, payout_id = _payout_name(request.name)
        await self.auth.require(context, "payouts:read", merchant)
        row = await self.payouts.get(merchant, payout_id)
        return pb.GetPayoutResponse(payout=await self._answer(row))

    @rpc
    async def ListPayouts(
        self, request: pb.ListPayoutsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPayoutsResponse:
        violations: validate.Violations = []
        merchant = validate.merchant_of(request.parent, violations)
        states = []
        for s in request.states:
            if s not in render.STATE_NAME:
                violations.append(("states", f"unknown state {s}"))
            else:
                states.append(render.STATE_NAME[s])
        binding = f"{request.parent}|{sorted(states)}"
        after = None
        if request.page_token:
            after = validate.decode_page_token(request.page_token, binding)
            if after is None:
                violations.append(("page_token", "not a token of this listing"))
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "payouts:read", merchant)
        limit = validate.page_size(request.page_size)
        rows = await self.payouts.list(merchant, states, after, limit + 1)
        answer = pb.ListPayoutsResponse(payouts=await self._render(rows[:limit]))
        if len(rows) > limit:
            last = rows[limit - 1]
            answer.next_page_token = validate.encode_page_token(
                last["create_time"], last["id"], binding
            )
        return answer

    @rpc
    async def CancelPayout(
        self, request: pb.CancelPayoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelPayoutResponse:
        merchant, payout_id = _payout_name(request.name)
        await self.auth.require(context, "payouts:write", merchant)
        row = await self.payouts.cancel(merchant, payout_id, self.clock())
        return pb.CancelPayoutResponse(payout=await self._answer(row))

    @rpc
    async def ApprovePayout(
        self, request: pb.ApprovePayoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApprovePayoutResponse:
        merchant, payout_id = _payout_name(request.name)
        violations: validate.Violations = []
        if not _KEY_ID.fullmatch(request.approver_key_id):
            violations.append(("approver_key_id", "the approver's key id in the signer"))
        if len(request.signature) != 64:
            violations.append(("signature", "a 64-byte Ed25519 signature"))
        if not _DIGEST.fullmatch(request.body_digest):
            violations.append(("body_digest", "64 lowercase hex characters"))
        if violations:
            raise invalid(violations)
        await self.auth.require(context, "payouts:approve", merchant)
        row = await self.payouts.approve(
            merchant,
            payout_id,
            request.approver_key_id,
            bytes(request.signature),
            request.body_digest,
            self.clock(),
        )
        return pb.ApprovePayoutResponse(payout=await self._answer(row))


class SweepService(pb_grpc.SweepServiceServicer):
    """Deposit sweeps, for platform keys (None merchant: platform-wide scopes)."""

    def __init__(self, sweeper: Sweeper, auth: Authenticator, fence_of: FenceOf) -> None:
        self.sweeper = sweeper
        self.auth = auth
        self.fence_of = fence_of  # this replica's fence of `sweeps` (core/api/leader.py)

    async def _render(self, rows: Sequence[Row]) -> list[pb.Sweep]:
        return [
            render.sweep(v.row, v.transactions, v.invoice_merchant)
            for v in await self.sweeper.views(rows)
        ]

    @rpc
    async def RunSweeps(
        self, request: pb.RunSweepsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunSweepsResponse:
        await self.auth.require(context, "sweeps:write", None)
        if request.chain not in self.sweeper.sweeps.treasury:
            raise invalid([("chain", "a chain with a [sweeps] treasury")])
        fence = await leader_fence(self.fence_of, "sweeps")
        try:
            rows = await self.sweeper.run_once(request.chain, fence)
        except FencedError:
            raise not_leader("sweeps") from None
        return pb.RunSweepsResponse(sweeps=await self._render(list(rows)))

    @rpc
    async def GetSweep(
        self, request: pb.GetSweepRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSweepResponse:
        sweep_id = names.parse_sweep(request.name)
        if sweep_id is None:
            raise invalid([("name", "must be sweeps/{sweep}")])
        await self.auth.require(context, "sweeps:read", None)
        row = await self.sweeper.get(sweep_id)
        if row is None:
            raise not_found("sweep", request.name)
        return pb.GetSweepResponse(sweep=(await self._render([row]))[0])

    @rpc
    async def ListSweeps(
        self, request: pb.ListSweepsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSweepsResponse:
        binding = f"sweeps|{request.chain}"
        before = None
        if request.page_token:
            before = validate.decode_page_token(request.page_token, binding)
            if before is None:
                raise invalid([("page_token", "not a token of this listing")])
        await self.auth.require(context, "sweeps:read", None)
        limit = validate.page_size(request.page_size)
        rows = await self.sweeper.list(request.chain, before, limit + 1)
        answer = pb.ListSweepsResponse(sweeps=await self._render(list(rows[:limit])))
        if len(rows) > limit:
            last = rows[limit - 1]
            answer.next_page_token = validate.encode_page_token(
                last["create_time"], last["id"], binding
            )
        return answer
