"""Node failover, proven against two real anvils serving one chain.

The twins start from the same genesis (a fixed --timestamp) and mine only
when told, with explicit block timestamps, so the blocks both mine are the
same blocks, hash for hash. The adapter is given both URLs; it uses the
first, which is then SIGKILLed:
- with the second node on the same chain, the stream goes on from the next
  height, nothing skipped, nothing repeated, no Undo;
- with the second node diverged (it mined other blocks after a common
  ancestor), the switch is a reorg: Undo to the common ancestor, then the
  second node's blocks, carrying the same payment at its new height.
While no node is reachable the adapter's health is NOT_SERVING.
The Reader of test_evm_adapter checks every event against the stream's
contract (each block extends the last, each Undo starts from it).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kassa.chain.v1 import adapter_pb2 as pb
from localstack.anvil import Anvil
from localstack.procs import ManagedProcess
from tests.support.evm import core_channel, cursor_of, open_stream, start_adapter, stub

ACCOUNT0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
GENESIS_TIME = 1_700_000_000
PAYEE = "0x00000000000000000000000000000000000a11ce"


def canonical_hash(node: Anvil, height: int) -> str:
    return str(node.rpc("eth_getBlockByNumber", hex(height), False)["hash"]).lower()


class Twins:
    def __init__(self, base: Path) -> None:
        args = ["--timestamp", str(GENESIS_TIME), "--no-mining"]
        self.a = Anvil(base / "a", extra_args=args).start()
        self.b = Anvil(base / "b", extra_args=args).start()
        self.time = GENESIS_TIME

    def mine(self, *nodes: Anvil, blocks: int = 1, offset_s: int = 0) -> None:
        """Mines `blocks` blocks on each node with the same timestamps (plus
        offset_s: nodes given different offsets mine different blocks)."""
        for _ in range(blocks):
            self.time += 12
            for node in nodes:
                node.rpc("evm_mine", self.time + offset_s)

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[Twins, ManagedProcess, int]]:
    nodes = Twins(tmp_path)
    nodes.mine(nodes.a, nodes.b, blocks=3)
    assert canonical_hash(nodes.a, 3) == canonical_hash(nodes.b, 3)  # the same chain
    process, port = start_adapter(tmp_path, [nodes.a.ws_url, nodes.b.ws_url], [])
    try:
        yield nodes, process, port
    finally:
        code = process.stop()
        nodes.stop()
    assert code == 0


def kill(node: Anvil) -> None:
    assert node.process is not None
    node.process.send_signal(signal.SIGKILL)
    node.process.wait()


def connected_urls(process: ManagedProcess) -> list[str]:
    return [
        record["url"]
        for line in process.log_path.read_text().splitlines()
        if line.startswith("{") and (record := json.loads(line)).get("msg") == "node_connected"
    ]


def cursor_of_node(node: Anvil, height: int) -> pb.BlockCursor:
    return pb.BlockCursor(height=height, hash=canonical_hash(node, height))


def signed_payment(nonce: int) -> str:
    tx = {
        "to": to_checksum_address(PAYEE),
        "value": 10**15,
        "gas": 21_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "nonce": nonce,
        "chainId": 31337,
    }
    return "0x" + bytes(Account.sign_transaction(tx, ACCOUNT0_KEY).raw_transaction).hex()


async def test_killing_the_node_in_use_skips_and_repeats_no_height(twins) -> None:
    nodes, process, port = twins
    async with stub(port) as client:
        reader = await open_stream(client)
        await reader.next()  # the head
        nodes.mine(nodes.a, nodes.b, blocks=3)
        before = await reader.blocks_until(nodes.a.head())
        assert connected_urls(process) == [nodes.a.ws_url]

        kill(nodes.a)
        nodes.mine(nodes.b, blocks=4)
        # blocks_until asserts every event is a block (an Undo would fail it)
        # and the Reader that each extends the last: no gap, no repeat.
        after = await reader.blocks_until(nodes.b.head())
        reader.close()
    assert [b.height for b in after] == list(range(before[-1].height + 1, nodes.b.head() + 1))
    assert [b.hash for b in before + after] == [
        canonical_hash(nodes.b, b.height) for b in before + after
    ]
    assert connected_urls(process)[-1] == nodes.b.ws_url


async def test_failing_over_to_a_diverged_node_is_a_reorg_to_the_common_ancestor(twins) -> None:
    nodes, _process, port = twins
    raw = signed_payment(nonce=0)
    async with stub(port) as client:
        reader = await open_stream(client)
        await reader.next()
        nodes.mine(nodes.a, nodes.b, blocks=2)  # shared up to here
        ancestor = nodes.a.head()
        # A mines the payment at ancestor + 1; B mines an empty block first
        # and the same payment one block later, then one more.
        tx_hash = str(nodes.a.rpc("eth_sendRawTransaction", raw)).lower()
        nodes.mine(nodes.a, blocks=2, offset_s=1)
        nodes.mine(nodes.b, offset_s=2)
        assert nodes.b.rpc("eth_sendRawTransaction", raw).lower() == tx_hash
        nodes.mine(nodes.b, blocks=2, offset_s=2)
        assert canonical_hash(nodes.a, ancestor + 1) != canonical_hash(nodes.b, ancestor + 1)

        seen_on_a = await reader.blocks_until(ancestor + 2)
        paid_on_a = [b for b in seen_on_a if any(t.tx_hash == tx_hash for t in b.transfers)]
        assert [b.height for b in paid_on_a] == [ancestor + 1]

        kill(nodes.a)
        undo = await reader.next_non_head()
        assert undo.HasField("undo"), undo
        assert undo.undo.to_cursor.height == ancestor
        assert undo.undo.to_cursor.hash == canonical_hash(nodes.b, ancestor)
        on_b = await reader.blocks_until(nodes.b.head())
        reader.close()
    assert [cursor_of(b) for b in on_b] == [
        cursor_of_node(nodes.b, h) for h in range(ancestor + 1, nodes.b.head() + 1)
    ]
    payments = [(b.height, t.index, t.to_address) for b in on_b for t in b.transfers]
    assert payments == [(ancestor + 2, 0, PAYEE)]


async def test_health_is_not_serving_while_no_node_is_reachable(tmp_path: Path) -> None:
    node = Anvil(tmp_path / "node").start()
    process, port = start_adapter(tmp_path, [node.ws_url], [])
    try:
        async with core_channel(port) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status_becomes(expected: int, timeout_s: float = 15.0) -> None:
                deadline = time.monotonic() + timeout_s
                while True:
                    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
                    if answer.status == expected:
                        return
                    assert time.monotonic() < deadline, f"health stayed {answer.status}"
                    await asyncio.sleep(0.1)

            await status_becomes(health_pb2.HealthCheckResponse.SERVING)
            kill(node)
            await status_becomes(health_pb2.HealthCheckResponse.NOT_SERVING)
            node = Anvil(tmp_path / "again", port=node.port).start()  # back, same URL
            await status_becomes(health_pb2.HealthCheckResponse.SERVING)
        log = process.log_path.read_text()
        assert '"no_node_reachable"' in log and '"node_reachable"' in log
    finally:
        code = process.stop()
        node.stop()
    assert code == 0
