"""LedgerService handlers: translate between kassa.ledger.v1 and core.ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import grpc

from core.api import page_tokens
from core.api.auth import Authenticator
from core.api.errors import rpc, rpc_stream
from core.ledger.batcher import Poster
from core.ledger.queries import LedgerReader, invalid
from core.ledger.rules import (
    AMOUNT_MAX,
    CODE_MAX,
    ID_MAX_LEN,
    Account,
    AccountFlags,
    Transfer,
    TransferFlags,
)
from core.render.ledger import account_message, results_message, transfer_message
from kassa.ledger.v1 import ledger_pb2 as pb
from kassa.ledger.v1 import ledger_pb2_grpc as pb_grpc

MAX_ITEMS = 8190
CHUNK = 256  # transfers converted or rendered between two yields to the event loop
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
Violations = list[tuple[str, str]]


def _amount(text: str, where: str, violations: Violations, allow_zero: bool) -> int:
    if not text and allow_zero:
        return 0
    body = text[1:] if text.startswith("-") else text
    if not body.isascii() or not body.isdigit() or len(body) > 80:
        violations.append((where, 'must be a whole number of base units, e.g. "25000000"'))
        return 0
    value = int(text)
    # Zero, negative and too large amounts are the rules' AMOUNT_INVALID.
    return max(min(value, AMOUNT_MAX + 1), -1)


def transfer_of(m: pb.Transfer, where: str, violations: Violations) -> Transfer:
    kinds = [m.pending, m.post_pending, m.void_pending]
    if sum(kinds) > 1:
        violations.append((where, "at most one of pending, post_pending, void_pending"))
    if m.code > CODE_MAX:
        violations.append((f"{where}.code", f"must be at most {CODE_MAX}"))
    flags = (
        (TransferFlags.LINKED if m.linked else 0)
        | (TransferFlags.PENDING if m.pending else 0)
        | (TransferFlags.POST_PENDING if m.post_pending else 0)
        | (TransferFlags.VOID_PENDING if m.void_pending else 0)
    )
    resolving = m.post_pending or m.void_pending
    return Transfer(
        id=m.id,
        debit_account_id=m.debit_account_id,
        credit_account_id=m.credit_account_id,
        amount=_amount(m.amount, f"{where}.amount", violations, allow_zero=resolving),
        asset=m.asset,
        code=m.code,
        flags=int(flags),
        pending_id=m.pending_id,
        timeout_s=m.timeout_s,
        reference=m.reference,
        user_data=m.user_data,
    )


def _items(count: int, name: str) -> None:
    if count == 0:
        raise invalid([(name, "at least one is required")])
    if count > MAX_ITEMS:
        raise invalid([(name, f"at most {MAX_ITEMS} per request")])


def _binding(request: pb.ListTransfersRequest) -> str:
    return "|".join(
        (
            "transfers",
            request.account_id,
            request.start_time.SerializeToString(deterministic=True).hex(),
            request.end_time.SerializeToString(deterministic=True).hex(),
        )
    )


def encode_page_token(seq: int, binding: str) -> str:
    return page_tokens.seal(str(seq), binding)


def decode_page_token(token: str, binding: str) -> int | None:
    position = page_tokens.open_token(token, binding)
    if position is None or not position.isascii() or not position.isdigit():
        return None
    return int(position)


class LedgerService(pb_grpc.LedgerServiceServicer):
    """The ledger is platform-wide: callers need ledger:read / ledger:write on a platform key."""

    def __init__(
        self,
        reader: LedgerReader,
        poster: Poster,
        auth: Authenticator,
        clock: Callable[[], datetime],
    ) -> None:
        self.reader = reader
        self.poster = poster
        self.auth = auth
        self.clock = clock

    @rpc
    async def CreateAccounts(
        self, request: pb.CreateAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateAccountsResponse:
        await self.auth.require(context, "ledger:write", None)
        _items(len(request.accounts), "accounts")
        violations: Violations = []
        accounts = []
        for i, m in enumerate(request.accounts):
            if m.code > CODE_MAX:
                violations.append((f"accounts[{i}].code", f"must be at most {CODE_MAX}"))
            flags = (
                AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
                if m.debits_must_not_exceed_credits
                else 0
            ) | (
                AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
                if m.credits_must_not_exceed_debits
                else 0
            )
            accounts.append(Account(m.id, m.asset, m.code, int(flags), user_data=m.user_data))
        if violations:
            raise invalid(violations)
        results = await self.reader.create_accounts(accounts)
        return pb.CreateAccountsResponse(results=results_message([a.id for a in accounts], results))

    @rpc
    async def CreateTransfers(
        self, request: pb.CreateTransfersRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTransfersResponse:
        await self.auth.require(context, "ledger:write", None)
        _items(len(request.transfers), "transfers")
        violations: Violations = []
        batch: list[Transfer] = []
        # In chunks, giving the event loop back between them: parsing and
        # rendering 8,190 transfers is ~0.2 s of Python that would otherwise
        # stall every other caller (the rules themselves run in a thread).
        for i, m in enumerate(request.transfers):
            if i % CHUNK == CHUNK - 1:
                await asyncio.sleep(0)
            batch.append(transfer_of(m, f"transfers[{i}]", violations))
        if violations:
            raise invalid(violations)
        results = await self.poster.submit(batch)
        response = pb.CreateTransfersResponse()
        for start in range(0, len(batch), CHUNK):
            # Between chunks only: a yield before the first put every call, and most
            # carry one transfer, behind all the loop's ready callbacks once more.
            if start:
                await asyncio.sleep(0)
            end = start + CHUNK
            response.results.extend(
                results_message([t.id for t in batch[start:end]], results[start:end])
            )
        return response

    @rpc
    async def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAccountResponse:
        await self.auth.require(context, "ledger:read", None)
        if not request.id:
            raise invalid([("id", "is required")])
        account, create_time = await self.reader.account(request.id)
        return pb.GetAccountResponse(account=account_message(account, create_time))

    @rpc
    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAccountsResponse:
        await self.auth.require(context, "ledger:read", None)
        violations: Violations = []
        if len(request.id_prefix) > ID_MAX_LEN:
            violations.append(("id_prefix", f"at most {ID_MAX_LEN} characters"))
        binding = f"accounts|{request.id_prefix}"
        after = ""
        if request.page_token:
            opened = page_tokens.open_token(request.page_token, binding)
            if opened is None:
                violations.append(("page_token", "is not a token this server issued"))
            after = opened or ""
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            violations.append(("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
        if violations:
            raise invalid(violations)
        size = request.page_size or DEFAULT_PAGE_SIZE
        rows = await self.reader.accounts_page(request.id_prefix, after, size + 1)
        response = pb.ListAccountsResponse(
            accounts=[account_message(account, created) for account, created in rows[:size]]
        )
        if len(rows) > size:
            response.next_page_token = page_tokens.seal(rows[size - 1][0].id, binding)
        return response

    @rpc
    async def ListTransfers(
        self, request: pb.ListTransfersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTransfersResponse:
        await self.auth.require(context, "ledger:read", None)
        violations: Violations = []
        if not request.account_id:
            violations.append(("account_id", "is required"))
        after = 0
        if request.page_token:
            decoded = decode_page_token(request.page_token, _binding(request))
            if decoded is None:
                violations.append(("page_token", "is not a token this server issued"))
            after = decoded or 0
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            violations.append(("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
        start, end = _time_range(request, violations)
        if violations:
            raise invalid(violations)
        size = request.page_size or DEFAULT_PAGE_SIZE
        rows = await self.reader.transfers_page(request.account_id, after, start, end, size + 1)
        response = pb.ListTransfersResponse(transfers=[transfer_message(r) for r in rows[:size]])
        if len(rows) > size:
            response.next_page_token = encode_page_token(rows[size - 1]["seq"], _binding(request))
        return response

    @rpc_stream
    async def ExportStatement(
        self, request: pb.ExportStatementRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportStatementResponse]:
        await self.auth.require(context, "ledger:read", None)
        violations: Violations = []
        if not request.account_id:
            violations.append(("account_id", "is required"))
        start, end = _time_range(request, violations)
        if violations:
            raise invalid(violations)
        async for chunk in self.reader.statement_csv(request.account_id, start, end):
            yield pb.ExportStatementResponse(csv_chunk=chunk)


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_FAR = datetime.fromisoformat("9999-01-01T00:00:00+00:00")


def _time_range(
    request: pb.ListTransfersRequest | pb.ExportStatementRequest, violations: Violations
) -> tuple[datetime, datetime]:
    start = (
        request.start_time.ToDatetime(_EPOCH.tzinfo) if request.HasField("start_time") else _EPOCH
    )
    end = request.end_time.ToDatetime(_EPOCH.tzinfo) if request.HasField("end_time") else _FAR
    if end <= start:
        violations.append(("end_time", "must be after start_time"))
    return start, end
