"""scripts/bench evm_fetch: one block of N native transfers fetched by the
adapter's BlockFetcher (web3's WebSocket provider, raw responses: the block
with its transactions, then one batch of N receipts), against the raw limit
measured in the same run: the same two requests over a bare `websockets`
connection with json.loads. Also reported: the block through web3's
formatted API (w3.eth.get_block(full_transactions=True)), which the adapter
does not use.

Medians of --rounds fetches from a local anvil (--no-mining, one mined block).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import websockets
from web3 import AsyncWeb3, WebSocketProvider

from adapters.evm.blocks import BlockFetcher
from adapters.evm.rpc import RpcClient
from localstack.anvil import Anvil


async def fetcher_ms(url: str, height: int, n: int, rounds: int) -> float:
    rpc = RpcClient([url], 120.0)
    await rpc.start()
    try:
        fetcher = BlockFetcher(rpc, 31337, [])
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            block = await fetcher._fetch_by_number(height)
            times.append(time.perf_counter() - started)
            assert block is not None and len(block.transfers) == n
        return statistics.median(times) * 1000
    finally:
        await rpc.close()


async def raw_ms(url: str, height: int, rounds: int) -> tuple[float, float]:
    """(block and receipts, block alone) in ms."""
    times, block_times = [], []
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        for _ in range(rounds):
            started = time.perf_counter()
            await ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "eth_getBlockByNumber",
                        "params": [hex(height), True],
                    }
                )
            )
            block = json.loads(await ws.recv())["result"]
            block_times.append(time.perf_counter() - started)
            batch = [
                {
                    "jsonrpc": "2.0",
                    "id": i + 2,
                    "method": "eth_getTransactionReceipt",
                    "params": [tx["hash"]],
                }
                for i, tx in enumerate(block["transactions"])
            ]
            await ws.send(json.dumps(batch))
            receipts = json.loads(await ws.recv())
            assert len(receipts) == len(batch)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, statistics.median(block_times) * 1000


async def formatted_ms(url: str, height: int, rounds: int) -> float:
    times = []
    async with AsyncWeb3(WebSocketProvider(url, websocket_kwargs={"max_size": None})) as w3:
        for _ in range(rounds):
            started = time.perf_counter()
            block = await w3.eth.get_block(height, full_transactions=True)
            assert block["transactions"]
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node = Anvil(
            Path(tmp) / "anvil", extra_args=["--no-mining", "--gas-limit", "1000000000"]
        ).start()
        try:
            accounts = node.accounts()
            for i in range(args.transfers):
                node.rpc(
                    "eth_sendTransaction",
                    {"from": accounts[i % 10], "to": f"0x{i + 1:040x}", "value": "0x1"},
                )
            node.mine(1)
            height = node.head()
            raw, raw_block = asyncio.run(raw_ms(node.ws_url, height, args.rounds))
            value = asyncio.run(fetcher_ms(node.ws_url, height, args.transfers, args.rounds))
            formatted = asyncio.run(formatted_ms(node.ws_url, height, args.rounds))
        finally:
            node.stop()
    print(
        json.dumps(
            {
                "bench": "evm_fetch",
                "value": round(value, 1),
                "unit": f"ms (block of {args.transfers} native transfers with receipts)",
                "baseline": round(raw, 1),
                "ratio": round(value / raw, 3),
                "raw_block_only_ms": round(raw_block, 1),
                "web3_formatted_block_only_ms": round(formatted, 1),
                "transfers": args.transfers,
            }
        )
    )


if __name__ == "__main__":
    main()
