"""The gRPC servicer: thin; validation, node calls and error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from Crypto.Hash import keccak

from adapters.evm import balances, erc20, logs, validate
from adapters.evm.ancestry import Cursor
from adapters.evm.blocks import BlockFetcher, transfer_proto
from adapters.evm.config import Config
from adapters.evm.errors import ServiceError, invalid_argument
from adapters.evm.heads import HeadTracker
from adapters.evm.normalise import native_asset, quantity, token_asset
from adapters.evm.pending import PendingWatcher
from adapters.evm.rpc import NodeUnavailable, RpcClient, RpcError
from adapters.evm.stream import BlockStream, SeenBlocks
from kassa.chain.v1 import adapter_pb2 as pb
from kassa.chain.v1 import adapter_pb2_grpc as pb_grpc

T = TypeVar("T")

# Phrases nodes use for a transaction they already hold (geth, anvil/reth,
# nethermind, erigon): a retry of a broadcast is success, not an error.
_ALREADY_KNOWN = (
    "already known",
    "already imported",
    "alreadyknown",
    "already exists",
    "known transaction",
)


def _cursor(message: pb.BlockCursor, field: str) -> Cursor:
    return Cursor(message.height, validate.block_hash(f"{field}.hash", message.hash))


class ChainAdapter(pb_grpc.ChainAdapterServiceServicer):
    def __init__(
        self,
        config: Config,
        rpc: RpcClient,
        fetcher: BlockFetcher,
        heads: HeadTracker,
        pending: PendingWatcher | None = None,
    ) -> None:
        self.config = config
        self.rpc = rpc
        self.fetcher = fetcher
        self.heads = heads
        self.pending = pending or PendingWatcher(
            rpc, config.chain_id, config.tokens, config.poll_interval_s
        )
        self.seen = SeenBlocks(config.reorg_window_blocks * 4)
        self.active_streams = 0
        # Set at shutdown: open streams end with UNAVAILABLE at once rather
        # than holding the process for the whole grace period.
        self.stopping = asyncio.Event()

    async def _run(
        self, context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], Awaitable[T]]
    ) -> T:
        try:
            return await work()
        except ServiceError as exc:
            await context.abort_with_status(exc.to_status())
        except NodeUnavailable as exc:
            await context.abort_with_status(
                ServiceError(grpc.StatusCode.UNAVAILABLE, "NODE_UNAVAILABLE", str(exc)).to_status()
            )
        except RpcError as exc:
            await context.abort_with_status(
                ServiceError(
                    grpc.StatusCode.UNAVAILABLE,
                    "NODE_ERROR",
                    f"the node refused {exc.method}: {exc.message}",
                ).to_status()
            )
        raise AssertionError("abort_with_status returns only by raising")

    async def GetChainInfo(
        self, request: pb.GetChainInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetChainInfoResponse:
        head = await self.heads.current()
        chain_id = self.config.chain_id
        return pb.GetChainInfoResponse(
            chain=f"eip155:{chain_id}",
            native_asset=native_asset(chain_id),
            tokens=[token_asset(chain_id, t) for t in self.config.tokens],
            head=pb.BlockCursor(height=head.height, hash=head.hash),
        )

    async def StreamBlocks(
        self, request: pb.StreamBlocksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamBlocksResponse]:
        try:
            from_cursor = (
                _cursor(request.from_cursor, "from_cursor")
                if request.HasField("from_cursor")
                else None
            )
            locator = [_cursor(c, f"locator[{i}]") for i, c in enumerate(request.locator)]
        except ServiceError as exc:
            await context.abort_with_status(exc.to_status())
            return
        subscriber = None
        if request.include_pending:
            try:
                await self.pending.ensure_started()
            except NodeUnavailable as exc:
                await context.abort_with_status(
                    ServiceError(
                        grpc.StatusCode.UNAVAILABLE, "NODE_UNAVAILABLE", str(exc)
                    ).to_status()
                )
                return
            subscriber = self.pending.subscribe()
        stream = BlockStream(
            self.fetcher,
            self.heads,
            self.seen,
            heartbeat_interval_s=self.config.heartbeat_interval_s,
            window_blocks=self.config.reorg_window_blocks,
            retry_interval_s=self.config.poll_interval_s,
            stopping=self.stopping,
            pending=subscriber,
        )
        # Read once: the call object is gone by the time a cancelled stream
        # unwinds, and asking it for the peer then crashes grpc's C core.
        peer = context.peer()
        self.active_streams += 1
        logs.info(
            "stream_opened",
            peer=peer,
            from_height=from_cursor.height if from_cursor else None,
            active_streams=self.active_streams,
        )
        try:
            async for event in stream.events(from_cursor, locator):
                yield pb.StreamBlocksResponse(event=event)
        except ServiceError as exc:
            logs.warning("stream_failed", reason=exc.reason, message=exc.message)
            await context.abort_with_status(exc.to_status())
        except NodeUnavailable as exc:
            await context.abort_with_status(
                ServiceError(grpc.StatusCode.UNAVAILABLE, "NODE_UNAVAILABLE", str(exc)).to_status()
            )
        finally:
            if subscriber is not None:
                self.pending.unsubscribe(subscriber)
            self.active_streams -= 1
            logs.info("stream_closed", peer=peer, active_streams=self.active_streams)

    async def BroadcastTransaction(
        self, request: pb.BroadcastTransactionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BroadcastTransactionResponse:
        raw = request.raw_transaction
        if not raw:
            await context.abort_with_status(
                invalid_argument(
                    "raw_transaction", "EMPTY_TRANSACTION", "raw_transaction is empty"
                ).to_status()
            )
        tx_hash = "0x" + keccak.new(digest_bits=256, data=raw).hexdigest()

        async def work() -> pb.BroadcastTransactionResponse:
            try:
                answer = await self.rpc.call("eth_sendRawTransaction", "0x" + raw.hex())
            except RpcError as exc:
                if any(p in exc.message.lower() for p in _ALREADY_KNOWN):
                    return pb.BroadcastTransactionResponse(tx_hash=tx_hash, already_known=True)
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "BROADCAST_REJECTED",
                    f"the node rejected the transaction: {exc.message}",
                    metadata={
                        "node_message": exc.message[:500],
                        "node_code": str(exc.code),
                        "tx_hash": tx_hash,
                    },
                ) from None
            logs.info("broadcast", tx_hash=tx_hash)
            return pb.BroadcastTransactionResponse(tx_hash=str(answer).lower())

        return await self._run(context, work)

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAccountResponse:
        async def work() -> pb.GetAccountResponse:
            address = validate.address("address", request.address)
            pending, latest, balance = await self._batch(
                [
                    ("eth_getTransactionCount", [address, "pending"]),
                    ("eth_getTransactionCount", [address, "latest"]),
                    ("eth_getBalance", [address, "latest"]),
                ]
            )
            return pb.GetAccountResponse(
                pending_nonce=quantity(pending),
                latest_nonce=quantity(latest),
                balance=str(quantity(balance)),
            )

        return await self._run(context, work)

    async def GetTokenBalance(
        self, request: pb.GetTokenBalanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTokenBalanceResponse:
        async def work() -> pb.GetTokenBalanceResponse:
            address = validate.address("address", request.address)
            contract = validate.token(
                "asset", request.asset, self.config.chain_id, self.config.tokens
            )
            data = erc20.balance_of_calldata(address)
            answer = await self.rpc.call("eth_call", {"to": contract, "data": data}, "latest")
            return pb.GetTokenBalanceResponse(balance=str(int(answer, 16) if answer != "0x" else 0))

        return await self._run(context, work)

    async def EstimateFees(
        self, request: pb.EstimateFeesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EstimateFeesResponse:
        async def work() -> pb.EstimateFeesResponse:
            header, priority = await self._batch(
                [
                    ("eth_getBlockByNumber", ["latest", False]),
                    ("eth_maxPriorityFeePerGas", []),
                ]
            )
            base = quantity(header.get("baseFeePerGas") or "0x0")
            tip = quantity(priority)
            # Twice the base fee survives six full blocks of +12.5% each.
            return pb.EstimateFeesResponse(
                base_fee_per_gas=str(base),
                max_priority_fee_per_gas=str(tip),
                max_fee_per_gas=str(2 * base + tip),
            )

        return await self._run(context, work)

    async def EstimateTransferGas(
        self, request: pb.EstimateTransferGasRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EstimateTransferGasResponse:
        async def work() -> pb.EstimateTransferGasResponse:
            sender = validate.address("from_address", request.from_address)
            recipient = validate.address("to_address", request.to_address)
            value = validate.amount("amount", request.amount)
            chain_id = self.config.chain_id
            if request.asset.lower() == native_asset(chain_id):
                call = {"from": sender, "to": recipient, "value": hex(value)}
            else:
                contract = validate.token("asset", request.asset, chain_id, self.config.tokens)
                data = erc20.transfer_calldata(recipient, value)
                call = {"from": sender, "to": contract, "data": data}
            try:
                gas = await self.rpc.call("eth_estimateGas", call)
            except RpcError as exc:
                # The node ran the call and it failed (a revert: the balance is not there).
                raise ServiceError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "ESTIMATE_REVERTED",
                    f"the transfer would fail now: {exc.message}",
                    metadata={"node_message": exc.message[:500]},
                ) from None
            return pb.EstimateTransferGasResponse(gas=quantity(gas))

        return await self._run(context, work)

    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTransactionResponse:
        async def work() -> pb.GetTransactionResponse:
            tx_hash = validate.block_hash("tx_hash", request.tx_hash)
            tx, receipt, head = await self._batch(
                [
                    ("eth_getTransactionByHash", [tx_hash]),
                    ("eth_getTransactionReceipt", [tx_hash]),
                    ("eth_blockNumber", []),
                ]
            )
            if receipt is None:
                status = (
                    pb.TRANSACTION_STATUS_UNKNOWN if tx is None else pb.TRANSACTION_STATUS_PENDING
                )
                return pb.GetTransactionResponse(status=status)
            height = quantity(receipt["blockNumber"])
            succeeded = receipt.get("status") is None or quantity(receipt["status"]) == 1
            fee = quantity(receipt["gasUsed"]) * quantity(
                receipt.get("effectiveGasPrice") or (tx or {}).get("gasPrice") or "0x0"
            )
            return pb.GetTransactionResponse(
                status=(
                    pb.TRANSACTION_STATUS_SUCCEEDED if succeeded else pb.TRANSACTION_STATUS_REVERTED
                ),
                block=pb.BlockCursor(height=height, hash=str(receipt["blockHash"]).lower()),
                fee_paid=str(fee),
                confirmations=max(0, quantity(head) - height + 1),
            )

        return await self._run(context, work)

    async def GetBalances(
        self, request: pb.GetBalancesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBalancesResponse:
        async def work() -> pb.GetBalancesResponse:
            queries = balances.parse_queries(
                self.config.chain_id,
                self.config.tokens,
                [(q.address, q.asset) for q in request.queries],
            )
            block, found = await balances.balances_at(self.rpc, request.height, queries)
            return pb.GetBalancesResponse(
                block=pb.BlockCursor(height=block.height, hash=block.hash),
                balances=[str(b) for b in found],
            )

        return await self._run(context, work)

    async def GetTransfers(
        self, request: pb.GetTransfersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTransfersResponse:
        async def work() -> pb.GetTransfersResponse:
            hashes = balances.parse_hashes(list(request.tx_hashes))
            found = await balances.transactions(
                self.rpc, self.config.chain_id, self.config.tokens, hashes
            )
            return pb.GetTransfersResponse(transactions=[_mined_proto(t) for t in found])

        return await self._run(context, work)

    async def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        answers = await self.rpc.batch(calls)
        for answer in answers:
            if isinstance(answer, RpcError):
                raise answer
        return answers


_STATUS = {
    "unknown": pb.TRANSACTION_STATUS_UNKNOWN,
    "pending": pb.TRANSACTION_STATUS_PENDING,
    "succeeded": pb.TRANSACTION_STATUS_SUCCEEDED,
    "reverted": pb.TRANSACTION_STATUS_REVERTED,
}


def _mined_proto(t: balances.MinedTransaction) -> pb.TransactionTransfers:
    message = pb.TransactionTransfers(
        tx_hash=t.tx_hash,
        status=_STATUS[t.status],
        from_address=t.from_address,
        to_address=t.to_address,
        transfers=[transfer_proto(x) for x in t.transfers],
        fee_paid=str(t.fee_paid_wei),
    )
    if t.block is not None:
        message.block.CopyFrom(pb.BlockCursor(height=t.block.height, hash=t.block.hash))
    return message
