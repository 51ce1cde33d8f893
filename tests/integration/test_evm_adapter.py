"""kassa-evm as a real subprocess against a real anvil.

Tests that reorg the chain use an anvil of their own so the session's chain
(shared with other tests) only ever grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from web3.exceptions import ProviderConnectionError

from adapters.evm.rpc import _RawWebSocketProvider
from kassa.chain.v1 import adapter_pb2 as pb
from kassa.chain.v1 import adapter_pb2_grpc as pb_grpc
from localstack.anvil import Anvil
from localstack.ports import free_port
from localstack.procs import console_script
from localstack.token import Token, deploy
from tests.support.evm import (
    core_channel,
    cursor_of,
    open_stream,
    start_adapter,
    stub,
    write_config,
)

ACCOUNT0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


@pytest.fixture(scope="module")
def adapter(anvil: Anvil, token: Token, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    process, port = start_adapter(tmp_path_factory.mktemp("evm"), [anvil.ws_url], [token.address])
    yield port
    assert process.stop() == 0  # SIGTERM → graceful exit 0


def error_info(error: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "kassa.chain"
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def canonical_hash(node: Anvil, height: int) -> str:
    return str(node.rpc("eth_getBlockByNumber", hex(height), False)["hash"]).lower()


# --- the session's chain -------------------------------------------------------------------


async def test_unset_cursor_starts_with_head_then_token_and_native_transfers(
    adapter: int, anvil: Anvil, token: Token
) -> None:
    accounts = anvil.accounts()
    async with stub(adapter) as client:
        reader = await open_stream(client)
        first = await reader.next()
        assert first.HasField("head")
        # The adapter's own head, which may lag the node by a notification; blocks follow it.
        assert first.head.head.height <= anvil.head()
        token_tx = token.mint(accounts[0], accounts[1], 1_234_567)
        token_tx2 = token.transfer(accounts[1], accounts[2], 1_000)
        native_tx = anvil.rpc(
            "eth_sendTransaction",
            {"from": accounts[3], "to": accounts[4], "value": hex(10**18 + 1)},
        )
        target = max(
            int(anvil.rpc.wait_receipt(tx)["blockNumber"], 16)
            for tx in (token_tx, token_tx2, native_tx)
        )
        blocks = await reader.blocks_until(target)
        reader.close()
    assert [b.height for b in blocks] == list(range(first.head.head.height + 1, target + 1))
    by_tx = {t.tx_hash: (b, t) for b in blocks for t in b.transfers}
    block, minted = by_tx[token_tx]
    receipt = anvil.rpc("eth_getTransactionReceipt", token_tx)
    assert block.hash == receipt["blockHash"]
    assert minted.asset == f"eip155:31337/erc20:{token.address}"
    assert minted.from_address == "0x" + "0" * 40
    assert minted.to_address == accounts[1]
    assert minted.amount == "1234567"
    assert (minted.index, minted.success) == (1, True)
    assert minted.log_index == int(receipt["logs"][0]["logIndex"], 16)
    _, moved = by_tx[token_tx2]
    assert (moved.from_address, moved.to_address, moved.amount) == (
        accounts[1],
        accounts[2],
        "1000",
    )
    block, native = by_tx[native_tx]
    assert native.asset == "eip155:31337/slip44:60"
    assert (native.from_address, native.to_address) == (accounts[3], accounts[4])
    assert (native.amount, native.index, native.success) == (str(10**18 + 1), 0, True)
    header = anvil.rpc("eth_getBlockByHash", block.hash, False)
    assert block.time.seconds == int(header["timestamp"], 16)
    assert block.parent_hash == header["parentHash"]


async def test_reverted_native_value_tx_is_streamed_with_success_false(
    adapter: int, anvil: Anvil, token: Token
) -> None:
    """The token has no receive function: sending it ether reverts. The
    transfer is streamed, marked failed, so consumers can see (and ignore) it."""
    sender = anvil.accounts()[5]
    async with stub(adapter) as client:
        reader = await open_stream(client)
        await reader.next()
        tx = anvil.rpc(
            "eth_sendTransaction",
            {"from": sender, "to": token.address, "value": hex(777), "gas": hex(60_000)},
        )
        assert anvil.rpc.wait_receipt(tx)["status"] == "0x0"
        blocks = await reader.blocks_until(anvil.head())
        reader.close()
    (transfer,) = [t for b in blocks for t in b.transfers if t.tx_hash == tx]
    assert (transfer.success, transfer.index, transfer.amount) == (False, 0, "777")
    assert transfer.to_address == token.address


async def test_many_blocks_at_once_arrive_in_order_without_gaps(adapter: int, anvil: Anvil) -> None:
    async with stub(adapter) as client:
        reader = await open_stream(client)
        start = (await reader.next()).head.head
        anvil.mine(20)
        blocks = await reader.blocks_until(start.height + 20)
        reader.close()
    assert [b.height for b in blocks] == list(range(start.height + 1, start.height + 21))
    assert blocks[0].parent_hash == start.hash
    for parent, child in itertools.pairwise(blocks):
        assert child.parent_hash == parent.hash


async def test_resume_from_cursor_backfills_exactly_the_missing_blocks(
    adapter: int, anvil: Anvil
) -> None:
    height = anvil.head()
    cursor = pb.BlockCursor(height=height, hash=canonical_hash(anvil, height))
    anvil.mine(7)
    async with stub(adapter) as client:
        reader = await open_stream(client, pb.StreamBlocksRequest(from_cursor=cursor))
        blocks = await reader.blocks_until(height + 7)
        anvil.mine(1)
        following = await reader.next_non_head()
        reader.close()
    assert [b.height for b in blocks] == list(range(height + 1, height + 8))
    assert [b.hash for b in blocks] == [canonical_hash(anvil, b.height) for b in blocks]
    assert following.block.height == height + 8


async def test_cursor_above_the_head_waits_for_the_chain(adapter: int, anvil: Anvil) -> None:
    """A cursor the node has not reached yet is waited for; once the chain
    gets there with another hash, it is a reorg like any other."""
    height = anvil.head()
    known = pb.BlockCursor(height=height, hash=canonical_hash(anvil, height))
    future = pb.BlockCursor(height=height + 2, hash="0x" + "ab" * 32)
    async with stub(adapter) as client:
        reader = await open_stream(
            client, pb.StreamBlocksRequest(from_cursor=future, locator=[known])
        )
        waiting = await reader.collect_for(1.5)
        assert waiting and all(e.HasField("head") for e in waiting)  # heartbeats only
        anvil.mine(3)
        undo = await reader.next_non_head()
        blocks = await reader.blocks_until(height + 3)
        reader.close()
    assert undo.undo.to_cursor == known
    assert undo.undo.from_height == height + 2
    assert [b.height for b in blocks] == [height + 1, height + 2, height + 3]


async def test_heartbeats_arrive_every_interval_with_the_head(adapter: int, anvil: Anvil) -> None:
    async with stub(adapter) as client:
        reader = await open_stream(client)
        started = time.monotonic()
        heads: list[pb.Head] = []
        while len(heads) < 3:
            event = await reader.next()
            if event.HasField("head"):
                heads.append(event.head)
        elapsed = time.monotonic() - started
        reader.close()
    assert 1.5 <= elapsed <= 4.5  # first at once, then one per heartbeat_interval_s = 1
    assert heads[-1].head.height == anvil.head()
    assert heads[-1].observe_time.seconds > 0


async def test_two_concurrent_streams_each_see_every_block(adapter: int, anvil: Anvil) -> None:
    async with stub(adapter) as client:
        first, second = await open_stream(client), await open_stream(client)
        start_a = (await first.next()).head.head.height
        start_b = (await second.next()).head.head.height
        anvil.mine(5)
        for _ in range(3):
            anvil.rpc("evm_mine")
        target = anvil.head()
        blocks_a = await first.blocks_until(target)
        blocks_b = await second.blocks_until(target)
        first.close()
        second.close()
    assert [b.height for b in blocks_a] == list(range(start_a + 1, target + 1))
    assert [b.height for b in blocks_b] == list(range(start_b + 1, target + 1))
    common = {b.height: b.hash for b in blocks_a} | {b.height: b.hash for b in blocks_b}
    assert all(common[b.height] == b.hash for b in blocks_a + blocks_b)


async def test_health_and_chain_info(adapter: int, anvil: Anvil, token: Token) -> None:
    async with core_channel(adapter) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "kassa.chain.v1.ChainAdapterService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        info = await pb_grpc.ChainAdapterServiceStub(channel).GetChainInfo(pb.GetChainInfoRequest())
    assert info.chain == "eip155:31337"
    assert info.native_asset == "eip155:31337/slip44:60"
    assert list(info.tokens) == [f"eip155:31337/erc20:{token.address}"]
    assert abs(info.head.height - anvil.head()) <= 1


async def test_account_fees_broadcast_and_transaction_status(
    adapter: int, anvil: Anvil, token: Token
) -> None:
    sender = Account.from_key(ACCOUNT0_KEY)
    receiver = to_checksum_address(anvil.accounts()[6])
    async with stub(adapter) as client:
        account = await client.GetAccount(pb.GetAccountRequest(address=sender.address))
        assert account.pending_nonce == int(
            anvil.rpc("eth_getTransactionCount", sender.address, "pending"), 16
        )
        assert account.balance == str(
            int(anvil.rpc("eth_getBalance", sender.address, "latest"), 16)
        )
        fees = await client.EstimateFees(pb.EstimateFeesRequest())
        base, tip = int(fees.base_fee_per_gas), int(fees.max_priority_fee_per_gas)
        assert int(fees.max_fee_per_gas) == 2 * base + tip
        assert base > 0
        signed = sender.sign_transaction(
            {
                "type": 2,
                "chainId": 31337,
                "nonce": account.pending_nonce,
                "to": receiver,
                "value": 12345,
                "gas": 21000,
                "maxFeePerGas": int(fees.max_fee_per_gas),
                "maxPriorityFeePerGas": tip,
            }
        )
        raw = bytes(signed.raw_transaction)
        sent = await client.BroadcastTransaction(
            pb.BroadcastTransactionRequest(raw_transaction=raw)
        )
        assert sent.tx_hash == "0x" + bytes(signed.hash).hex()
        assert not sent.already_known
        receipt = anvil.rpc.wait_receipt(sent.tx_hash)
        anvil.mine(2)
        status = await client.GetTransaction(pb.GetTransactionRequest(tx_hash=sent.tx_hash))
        assert status.status == pb.TRANSACTION_STATUS_SUCCEEDED
        assert status.block.hash == receipt["blockHash"]
        assert status.block.height == int(receipt["blockNumber"], 16)
        assert status.fee_paid == str(
            int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
        )
        assert status.confirmations == anvil.head() - status.block.height + 1
        after = await client.GetAccount(pb.GetAccountRequest(address=sender.address.lower()))
        assert after.latest_nonce == account.pending_nonce + 1
        # Re-broadcasting a mined transaction is refused by the node (nonce too low).
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.BroadcastTransaction(pb.BroadcastTransactionRequest(raw_transaction=raw))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(refused.value)[0] == "BROADCAST_REJECTED"
        unknown = await client.GetTransaction(pb.GetTransactionRequest(tx_hash="0x" + "12" * 32))
        assert unknown.status == pb.TRANSACTION_STATUS_UNKNOWN
        balance = await client.GetTokenBalance(
            pb.GetTokenBalanceRequest(
                address=anvil.accounts()[1], asset=f"eip155:31337/erc20:{token.address}"
            )
        )
        assert balance.balance == str(token.balance_of(anvil.accounts()[1]))


async def test_pending_and_already_known_broadcast(tmp_path: Path) -> None:
    node = Anvil(tmp_path / "anvil").start()
    node.rpc("evm_setAutomine", False)
    try:
        process, port = start_adapter(tmp_path, [node.ws_url], [])
        sender = Account.from_key(ACCOUNT0_KEY)
        signed = sender.sign_transaction(
            {
                "type": 2,
                "chainId": 31337,
                "nonce": 0,
                "to": to_checksum_address("0x" + "11" * 20),
                "value": 1,
                "gas": 21000,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        request = pb.BroadcastTransactionRequest(raw_transaction=bytes(signed.raw_transaction))
        async with stub(port) as client:
            first = await client.BroadcastTransaction(request)
            again = await client.BroadcastTransaction(request)
            assert (first.already_known, again.already_known) == (False, True)
            assert again.tx_hash == first.tx_hash
            status = await client.GetTransaction(pb.GetTransactionRequest(tx_hash=first.tx_hash))
            assert status.status == pb.TRANSACTION_STATUS_PENDING
            account = await client.GetAccount(pb.GetAccountRequest(address=sender.address))
            assert (account.pending_nonce, account.latest_nonce) == (1, 0)
    finally:
        assert process.stop() == 0
        node.stop()


@pytest.mark.parametrize(
    ("call", "field", "reason"),
    [
        ("GetAccount", "address", "INVALID_ADDRESS"),
        ("GetTokenBalance", "asset", "UNKNOWN_ASSET"),
        ("GetTransaction", "tx_hash", "INVALID_HASH"),
        ("BroadcastTransaction", "raw_transaction", "EMPTY_TRANSACTION"),
        ("StreamBlocks", "from_cursor.hash", "INVALID_HASH"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    adapter: int, call: str, field: str, reason: str
) -> None:
    requests = {
        "GetAccount": pb.GetAccountRequest(address="0x1234"),
        "GetTokenBalance": pb.GetTokenBalanceRequest(
            address="0x" + "11" * 20, asset="eip155:31337/erc20:0x" + "22" * 20
        ),
        "GetTransaction": pb.GetTransactionRequest(tx_hash="0xzz"),
        "BroadcastTransaction": pb.BroadcastTransactionRequest(),
        "StreamBlocks": pb.StreamBlocksRequest(from_cursor=pb.BlockCursor(height=1, hash="nothex")),
    }
    async with stub(adapter) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            result = getattr(client, call)(requests[call])
            if call == "StreamBlocks":
                async for _ in result:
                    pass
            else:
                await result
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(raised.value) == (reason, [field])


def test_wrong_chain_id_and_bad_config_refuse_to_start(anvil: Anvil, tmp_path: Path) -> None:
    config = write_config(tmp_path / "wrong.toml", free_port(), [anvil.ws_url], [], chain_id=1)
    result = subprocess.run(
        [console_script("kassa-evm"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "31337" in result.stderr and "refusing to start" in result.stderr
    (tmp_path / "bad.toml").write_text("[chain]\nchain_id = 1\n")
    result = subprocess.run(
        [console_script("kassa-evm"), "--config", str(tmp_path / "bad.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "node_urls" in result.stderr


async def test_fails_over_past_a_dead_url(anvil: Anvil, tmp_path: Path) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    process, port = start_adapter(tmp_path, [dead, anvil.ws_url], [])
    try:
        async with stub(port) as client:
            info = await client.GetChainInfo(pb.GetChainInfoRequest())
        assert info.chain == "eip155:31337"
    finally:
        assert process.stop() == 0


async def test_a_request_whose_reader_was_cancelled_gets_a_connection_error() -> None:
    """A disconnect cancels the connection's reader; a request still waiting
    must see a lost connection (retried, failed over), not CancelledError,
    which no `except Exception` stops and which silently ended the head poller."""
    provider = _RawWebSocketProvider("ws://127.0.0.1:1", request_timeout=5.0)
    reader = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    provider._message_listener_task = reader
    with pytest.raises(ProviderConnectionError):
        await provider._get_response_for_request_id(1)


# --- private chains that get reorganised ---------------------------------------------------


@pytest.fixture
def private_chain(tmp_path: Path) -> Iterator[tuple[Anvil, Token, int]]:
    node = Anvil(tmp_path / "anvil").start()
    deployed = deploy(node.rpc, node.accounts()[0])
    process, port = start_adapter(tmp_path, [node.ws_url], [deployed.address])
    try:
        yield node, deployed, port
    finally:
        code = process.stop()
        node.stop()
    assert code == 0


async def test_live_reorg_sends_undo_then_the_new_canonical_blocks(
    private_chain: tuple[Anvil, Token, int],
) -> None:
    node, _deployed, port = private_chain
    accounts = node.accounts()
    node.mine(5)
    async with stub(port) as client:
        reader = await open_stream(client)
        # The first Head is the adapter's head, which may lag the node's (a
        # newHeads notification not handled yet): read up to the node's tip,
        # not to start + 4, or the reorg below would find old blocks queued.
        start = (await reader.next()).head.head.height
        node.mine(4)
        tip = node.head()
        old = await reader.blocks_until(tip)
        assert [b.height for b in old] == list(range(start + 1, tip + 1))
        # Replace the last 3 blocks; the new ones carry a native transfer.
        node.rpc(
            "anvil_reorg", 3, [[{"from": accounts[0], "to": accounts[7], "value": hex(4242)}, 1]]
        )
        undo = await reader.next_non_head()
        assert undo.HasField("undo"), undo
        assert undo.undo.to_cursor.height == tip - 3
        assert undo.undo.to_cursor.hash == old[-4].hash == canonical_hash(node, tip - 3)
        assert undo.undo.from_height == tip
        new = await reader.blocks_until(tip)
        reader.close()
    assert [b.height for b in new] == [tip - 2, tip - 1, tip]
    assert [b.hash for b in new] == [canonical_hash(node, h) for h in (tip - 2, tip - 1, tip)]
    assert new[0].parent_hash == undo.undo.to_cursor.hash
    moved = [t for b in new for t in b.transfers if t.amount == "4242"]
    assert len(moved) == 1 and moved[0].to_address == accounts[7]
    assert not {b.hash for b in new} & {b.hash for b in old}


async def test_resume_from_a_reorged_cursor_undoes_to_the_newest_canonical_locator_entry(
    private_chain: tuple[Anvil, Token, int],
) -> None:
    node, _, port = private_chain
    node.mine(10)
    tip = node.head()
    applied = [
        pb.BlockCursor(height=h, hash=canonical_hash(node, h)) for h in range(tip, tip - 8, -1)
    ]
    node.rpc("anvil_reorg", 4, [])
    node.mine(2)
    async with stub(port) as client:
        reader = await open_stream(
            client, pb.StreamBlocksRequest(from_cursor=applied[0], locator=applied[1:])
        )
        undo = await reader.next_non_head()
        blocks = await reader.blocks_until(tip + 2)
        reader.close()
    assert undo.undo.to_cursor == applied[4]  # tip - 4: the newest still canonical
    assert undo.undo.from_height == tip
    assert [b.height for b in blocks] == list(range(tip - 3, tip + 3))
    assert blocks[0].parent_hash == applied[4].hash


async def test_resume_from_a_cursor_the_adapter_streamed_before_the_reorg_needs_no_locator(
    private_chain: tuple[Anvil, Token, int],
) -> None:
    node, _, port = private_chain
    async with stub(port) as client:
        reader = await open_stream(client)
        start = (await reader.next()).head.head.height
        node.mine(6)
        tip = node.head()  # the first Head may lag the node: read to the node's tip
        old = await reader.blocks_until(tip)
        assert [b.height for b in old] == list(range(start + 1, tip + 1))
        reader.close()
        node.rpc("anvil_reorg", 2, [])
        reader = await open_stream(client, pb.StreamBlocksRequest(from_cursor=cursor_of(old[-1])))
        undo = await reader.next_non_head()
        again = await reader.blocks_until(old[-1].height)
        reader.close()
    assert undo.undo.to_cursor == cursor_of(old[-3])
    assert [b.height for b in again] == [old[-2].height, old[-1].height]


async def test_unknown_cursor_without_ancestor_is_cursor_not_found(
    private_chain: tuple[Anvil, Token, int],
) -> None:
    node, _, port = private_chain
    node.mine(3)
    async with stub(port) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in client.StreamBlocks(
                pb.StreamBlocksRequest(
                    from_cursor=pb.BlockCursor(height=2, hash="0x" + "cd" * 32),
                    locator=[pb.BlockCursor(height=1, hash="0x" + "ef" * 32)],
                )
            ):
                pass
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(raised.value)[0] == "CURSOR_NOT_FOUND"


async def test_estimate_transfer_gas_is_what_the_transfer_then_uses(
    adapter: int, anvil: Anvil, token: Token
) -> None:
    """A token sweep's gas limit comes from here: the estimate covers the transfer as it then
    executes, and is far below a fixed 100,000 headroom."""
    holder, receiver = anvil.accounts()[7], anvil.accounts()[8]
    asset = f"eip155:31337/erc20:{token.address}"
    anvil.rpc.wait_receipt(token.mint(anvil.accounts()[0], holder, 5_000))
    anvil.rpc.wait_receipt(token.mint(anvil.accounts()[0], receiver, 1))
    async with stub(adapter) as client:
        native = await client.EstimateTransferGas(
            pb.EstimateTransferGasRequest(
                from_address=holder, to_address=receiver, asset="eip155:31337/slip44:60", amount="1"
            )
        )
        assert native.gas == 21_000
        estimate = await client.EstimateTransferGas(
            pb.EstimateTransferGasRequest(
                from_address=holder, to_address=receiver, asset=asset, amount="5000"
            )
        )
        receipt = anvil.rpc.wait_receipt(token.transfer(holder, receiver, 5_000, estimate.gas))
        assert int(receipt["status"], 16) == 1
        used = int(receipt["gasUsed"], 16)
        assert used <= estimate.gas < 100_000
        # Now the holder has nothing: the same transfer would revert, and says so.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.EstimateTransferGas(
                pb.EstimateTransferGasRequest(
                    from_address=holder, to_address=receiver, asset=asset, amount="5000"
                )
            )
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(raised.value)[0] == "ESTIMATE_REVERTED"
        for bad, field in (
            ({"amount": "-1"}, "amount"),
            ({"amount": "1.5"}, "amount"),
            ({"amount": str(2**256)}, "amount"),
            ({"from_address": "0x12"}, "from_address"),
            ({"asset": "eip155:31337/erc20:0x" + "11" * 20}, "asset"),
        ):
            fields = {
                "from_address": holder,
                "to_address": receiver,
                "asset": asset,
                "amount": "1",
                **bad,
            }
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await client.EstimateTransferGas(pb.EstimateTransferGasRequest(**fields))
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert error_info(raised.value)[1] == [field], bad


async def test_a_refused_call_returns_the_request_id_the_caller_sent(adapter: int) -> None:
    """The access log's id comes back with an error too (an abort replaces the
    trailers), so the core can quote the adapter's log line for a failed call."""
    sent = "adapter-error-7f3a"
    async with stub(adapter) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.GetAccount(
                pb.GetAccountRequest(address="0xnot"), metadata=(("x-request-id", sent),)
            )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(raised.value.trailing_metadata() or ())
    assert trailers.get("x-request-id") == sent
    assert "grpc-status-details-bin" in trailers  # the rich status is still there
