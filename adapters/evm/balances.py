"""Balances at a block height and transactions with their transfers, for
reconciliation (GetBalances, GetTransfers).

Raw JSON-RPC batches over the adapter's one connection: eth_getBalance and
ERC-20 `balanceOf` eth_call at a block number. web3's batch support would
add a formatter pass per answer for nothing — the answers are bare hex
quantities — and the bench (`scripts/bench reconcile`) measures this path
against raw batched eth_getBalance calls in the same run.

The block header at the height is read before and after the balances: if its
hash changed in between (a reorg at a height the caller thought settled), the
answer would mix two chains, so it is refused and the caller retries.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from adapters.evm import erc20
from adapters.evm.ancestry import Cursor
from adapters.evm.errors import ServiceError, invalid_argument
from adapters.evm.normalise import block_transfers, native_asset, quantity, token_asset
from adapters.evm.rpc import RpcClient, RpcError

MAX_BALANCE_QUERIES = 10_000
MAX_TX_HASHES = 1_000
# Calls per JSON-RPC batch, and batches in flight at once: a batch of 500
# balances is ~40 kB each way; a few in flight keep the node busy while the
# adapter parses the previous answer.
BATCH_CALLS = 500
BATCHES_IN_FLIGHT = 4
# The selector comes from the ABI (adapters/evm/erc20.py); the one address word is
# padded by hand because eth-abi takes ~7.4 us a word against ~0.25 us here
# (bench evm_fetch), and a run builds one call per deposit address.
_BALANCE_OF = "0x" + erc20.BALANCE_OF_SELECTOR.hex()
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Query:
    address: str  # lowercase 0x
    contract: str | None  # None: the native asset


def parse_queries(
    chain_id: int, tokens: Collection[str], queries: Sequence[tuple[str, str]]
) -> list[Query]:
    """Checks (address, asset) pairs; raises INVALID_ARGUMENT naming the first bad one."""
    if len(queries) > MAX_BALANCE_QUERIES:
        raise invalid_argument(
            "queries",
            "TOO_MANY_QUERIES",
            f"at most {MAX_BALANCE_QUERIES} balances per request, got {len(queries)}",
        )
    native = native_asset(chain_id)
    parsed = []
    for i, (address, asset) in enumerate(queries):
        if not _ADDRESS.fullmatch(address):
            raise invalid_argument(
                f"queries[{i}].address",
                "INVALID_ADDRESS",
                f"queries[{i}].address must be 0x followed by 40 hex digits, got {address[:80]!r}",
            )
        if asset == native:
            parsed.append(Query(address.lower(), None))
            continue
        contract = asset.rpartition(":")[2].lower()
        if contract not in tokens or asset != token_asset(chain_id, contract):
            raise invalid_argument(
                f"queries[{i}].asset",
                "UNKNOWN_ASSET",
                f"queries[{i}].asset {asset[:120]!r} is neither {native} nor a token "
                "this adapter serves",
            )
        parsed.append(Query(address.lower(), contract))
    return parsed


def balance_call(query: Query, block: str) -> tuple[str, list[Any]]:
    if query.contract is None:
        return "eth_getBalance", [query.address, block]
    data = _BALANCE_OF + query.address[2:].rjust(64, "0")
    return "eth_call", [{"to": query.contract, "data": data}, block]


def _balance(answer: Any) -> int:
    # balanceOf of an address that is not a contract at that height answers "0x".
    return 0 if answer == "0x" else quantity(answer)


async def _header(rpc: RpcClient, block: str) -> Cursor | None:
    header = await rpc.call("eth_getBlockByNumber", block, False)
    if header is None:
        return None
    return Cursor(quantity(header["number"]), str(header["hash"]).lower())


async def balances_at(
    rpc: RpcClient, height: int, queries: Sequence[Query]
) -> tuple[Cursor, list[int]]:
    """The block at `height` and each query's balance there, in order."""
    block = hex(height)
    before = await _header(rpc, block)
    if before is None:
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "HEIGHT_NOT_MINED",
            f"block {height} is not mined yet",
            metadata={"height": str(height)},
        )
    gate = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def chunk(part: Sequence[Query]) -> list[int]:
        async with gate:
            answers = await rpc.batch([balance_call(q, block) for q in part])
        for answer in answers:
            if isinstance(answer, RpcError):
                raise answer
        return [_balance(a) for a in answers]

    parts = await asyncio.gather(
        *(chunk(queries[i : i + BATCH_CALLS]) for i in range(0, len(queries), BATCH_CALLS))
    )
    after = await _header(rpc, block)
    if after != before:
        raise ServiceError(
            grpc.StatusCode.ABORTED,
            "BLOCK_REORGED",
            f"block {height} changed while its balances were read; retry",
            metadata={"height": str(height)},
        )
    return before, [b for part in parts for b in part]


@dataclass(frozen=True, slots=True)
class MinedTransaction:
    tx_hash: str
    status: str  # "unknown" | "pending" | "succeeded" | "reverted"
    block: Cursor | None
    from_address: str
    to_address: str
    transfers: list[Any]  # normalise.Transfer
    fee_paid_wei: int


def parse_hashes(hashes: Sequence[str]) -> list[str]:
    if len(hashes) > MAX_TX_HASHES:
        raise invalid_argument(
            "tx_hashes",
            "TOO_MANY_HASHES",
            f"at most {MAX_TX_HASHES} transactions per request, got {len(hashes)}",
        )
    for i, h in enumerate(hashes):
        if not _HASH.fullmatch(h):
            raise invalid_argument(
                f"tx_hashes[{i}]",
                "INVALID_HASH",
                f"tx_hashes[{i}] must be 0x followed by 64 hex digits, got {h[:80]!r}",
            )
    return [h.lower() for h in hashes]


def mined(
    chain_id: int, tokens: Collection[str], tx_hash: str, tx: Any, receipt: Any
) -> MinedTransaction:
    """One transaction from its node objects: pure, so unit-testable."""
    if receipt is None:
        return MinedTransaction(
            tx_hash,
            "unknown" if tx is None else "pending",
            None,
            str((tx or {}).get("from") or "").lower(),
            str((tx or {}).get("to") or "").lower(),
            [],
            0,
        )
    succeeded = receipt.get("status") is None or quantity(receipt["status"]) == 1
    transfers = block_transfers(
        chain_id,
        [tx] if tx is not None else [],
        receipt.get("logs") or [],
        {tx_hash: receipt},
        tokens,
    )
    fee = quantity(receipt["gasUsed"]) * quantity(
        receipt.get("effectiveGasPrice") or (tx or {}).get("gasPrice") or "0x0"
    )
    return MinedTransaction(
        tx_hash,
        "succeeded" if succeeded else "reverted",
        Cursor(quantity(receipt["blockNumber"]), str(receipt["blockHash"]).lower()),
        str(receipt.get("from") or "").lower(),
        str(receipt.get("to") or "").lower(),
        transfers,
        fee,
    )


async def transactions(
    rpc: RpcClient, chain_id: int, tokens: Collection[str], hashes: Sequence[str]
) -> list[MinedTransaction]:
    calls: list[tuple[str, list[Any]]] = []
    for h in hashes:
        calls += [("eth_getTransactionByHash", [h]), ("eth_getTransactionReceipt", [h])]
    answers: list[Any] = []
    for i in range(0, len(calls), BATCH_CALLS):
        part = await rpc.batch(calls[i : i + BATCH_CALLS])
        for answer in part:
            if isinstance(answer, RpcError):
                raise answer
        answers += part
    return [
        mined(chain_id, tokens, h, answers[2 * i], answers[2 * i + 1]) for i, h in enumerate(hashes)
    ]
