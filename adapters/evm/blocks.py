"""Fetches one block and its transfers from the node.

Two round trips per block: the block with full transactions, then one batch
with the tracked tokens' Transfer logs (eth_getLogs by block hash, so the
logs are those of exactly this block even mid-reorg) and the receipts of the
value-bearing transactions only (eth_getBlockReceipts would fetch all of
them and is not offered everywhere). With call tracing on for the chain, the
same batch carries the block's traces (by hash), for the native value that
moves inside contract calls; with it off nothing is asked for or parsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from adapters.evm.ancestry import Cursor
from adapters.evm.normalise import (
    TRANSFER_TOPIC,
    Transfer,
    block_transfers,
    quantity,
    value_bearing,
)
from adapters.evm.rpc import RpcClient, RpcError
from adapters.evm.traces import (
    TraceMethod,
    TraceMismatch,
    call_tracer_transfers,
    trace_block_transfers,
    trace_request,
)
from kassa.chain.v1 import adapter_pb2 as pb


class BlockGone(Exception):
    """The block left the canonical chain while it was being fetched."""


@dataclass(frozen=True, slots=True)
class FetchedBlock:
    cursor: Cursor
    parent_hash: str
    timestamp_s: int
    transfers: list[Transfer]

    def to_proto(self) -> pb.Block:
        return pb.Block(
            height=self.cursor.height,
            hash=self.cursor.hash,
            parent_hash=self.parent_hash,
            time=Timestamp(seconds=self.timestamp_s),
            transfers=[transfer_proto(t) for t in self.transfers],
        )


def transfer_proto(t: Transfer) -> pb.Transfer:
    return pb.Transfer(
        tx_hash=t.tx_hash,
        index=t.index,
        asset=t.asset,
        from_address=t.from_address,
        to_address=t.to_address,
        amount=str(t.amount),
        success=t.success,
        log_index=t.log_index,
    )


class BlockFetcher:
    def __init__(
        self,
        rpc: RpcClient,
        chain_id: int,
        tokens: Sequence[str],
        trace: TraceMethod = TraceMethod.OFF,
    ) -> None:
        self.rpc = rpc
        self.chain_id = chain_id
        self.trace = trace
        self.tokens = list(tokens)
        self._token_set = frozenset(self.tokens)
        # Concurrent streams asking for the same height at once share one fetch.
        self._inflight: dict[int, asyncio.Task[FetchedBlock | None]] = {}

    async def canonical_hashes(self, heights: Iterable[int]) -> dict[int, str | None]:
        """The canonical hash at each height (None above the head), one batch."""
        wanted = sorted(set(heights))
        answers = await self.rpc.batch([("eth_getBlockByNumber", [hex(h), False]) for h in wanted])
        out: dict[int, str | None] = {}
        for height, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, RpcError):
                raise answer
            out[height] = str(answer["hash"]).lower() if answer else None
        return out

    async def header(self, tag: str) -> dict[str, Any] | None:
        answer = await self.rpc.call("eth_getBlockByNumber", tag, False)
        return dict(answer) if answer else None

    async def header_by_hash(self, block_hash: str) -> dict[str, Any] | None:
        answer = await self.rpc.call("eth_getBlockByHash", block_hash, False)
        return dict(answer) if answer else None

    async def by_number(self, height: int) -> FetchedBlock | None:
        """The canonical block at height with its transfers; None above the head."""
        task = self._inflight.get(height)
        if task is None:
            task = asyncio.create_task(self._fetch_by_number(height))
            self._inflight[height] = task
            task.add_done_callback(lambda done: self._forget(height, done))
        # Shielded: one stream going away must not cancel the fetch others share.
        return await asyncio.shield(task)

    def _forget(self, height: int, task: asyncio.Task[FetchedBlock | None]) -> None:
        self._inflight.pop(height, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away

    async def _fetch_by_number(self, height: int) -> FetchedBlock | None:
        for _ in range(5):
            block = await self.rpc.call("eth_getBlockByNumber", hex(height), True)
            if block is None:
                return None
            try:
                return await self.complete(block)
            except BlockGone:
                continue  # reorged while we looked; the next answer is the new canonical one
        raise BlockGone(f"block {height} kept changing while being fetched")

    async def complete(self, block: dict[str, Any]) -> FetchedBlock:
        """Adds the transfers to a block object fetched with full transactions."""
        block_hash = str(block["hash"]).lower()
        value_txs = value_bearing(block.get("transactions") or [])
        calls: list[tuple[str, list[Any]]] = []
        if self.tokens:
            calls.append(
                (
                    "eth_getLogs",
                    [{"blockHash": block_hash, "address": self.tokens, "topics": [TRANSFER_TOPIC]}],
                )
            )
        transactions = block.get("transactions") or []
        if self.trace is not TraceMethod.OFF and transactions:
            calls.append(trace_request(self.trace, block_hash, quantity(block["number"])))
        calls.extend(("eth_getTransactionReceipt", [tx["hash"]]) for tx in value_txs)
        answers = await self.rpc.batch(calls)
        logs: list[dict[str, Any]] = []
        if self.tokens:
            first = answers.pop(0)
            if isinstance(first, RpcError):
                # Nodes answer getLogs for a hash they no longer have with an error.
                raise BlockGone(str(first))
            logs = list(first or [])
        internal: list[tuple[int, Transfer]] = []
        if self.trace is not TraceMethod.OFF and transactions:
            internal = self._internal(block_hash, transactions, answers.pop(0))
        receipts: dict[str, dict[str, Any]] = {}
        for tx, receipt in zip(value_txs, answers, strict=True):
            if isinstance(receipt, RpcError) or receipt is None:
                raise BlockGone(f"receipt of {tx['hash']} unavailable")
            if str(receipt.get("blockHash", "")).lower() != block_hash:
                raise BlockGone(f"receipt of {tx['hash']} is from another block")
            receipts[str(tx["hash"]).lower()] = receipt
        return FetchedBlock(
            cursor=Cursor(quantity(block["number"]), block_hash),
            parent_hash=str(block["parentHash"]).lower(),
            timestamp_s=quantity(block["timestamp"]),
            transfers=block_transfers(
                self.chain_id, transactions, logs, receipts, self._token_set, internal
            ),
        )

    def _internal(
        self, block_hash: str, transactions: list[Any], answer: Any
    ) -> list[tuple[int, Transfer]]:
        if isinstance(answer, RpcError):
            # Tracing was configured for this chain: a node that cannot trace
            # this block (pruned state, method off) must not let its internal
            # transfers pass unseen, so the block is retried, not sent.
            raise BlockGone(f"no trace of block {block_hash}: {answer}")
        hashes = [str(tx.get("hash", "")).lower() for tx in transactions]
        try:
            if self.trace is TraceMethod.CALL_TRACER:
                return call_tracer_transfers(self.chain_id, hashes, answer)
            return trace_block_transfers(self.chain_id, block_hash, hashes, answer)
        except TraceMismatch as exc:
            raise BlockGone(f"trace of block {block_hash} does not match it: {exc}") from None
