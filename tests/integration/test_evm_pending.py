"""Mempool sightings from kassa-evm against a real anvil with automine off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kassa.chain.v1 import adapter_pb2 as pb
from localstack.anvil import Anvil
from localstack.token import Token, deploy
from tests.support.evm import Reader, open_stream, start_adapter, stub


@pytest.fixture(scope="module")
def mempool_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, Token, int]]:
    base = tmp_path_factory.mktemp("pending")
    node = Anvil(base / "anvil").start()
    deployed = deploy(node.rpc, node.accounts()[0])
    deployed.mint(node.accounts()[0], node.accounts()[0], 10**12)
    node.rpc("evm_setAutomine", False)
    process, port = start_adapter(Path(base), [node.ws_url], [deployed.address])
    try:
        yield node, deployed, port
    finally:
        code = process.stop()
        node.stop()
    assert code == 0


async def _next_pending(reader: Reader) -> pb.Pending:
    while True:
        event = await reader.next()
        if event.HasField("pending"):
            return event.pending


async def test_mempool_transfers_are_announced_once_then_mined_with_the_same_keys(
    mempool_chain: tuple[Anvil, Token, int],
) -> None:
    node, token, port = mempool_chain
    sender, payee = node.accounts()[0], node.accounts()[5].lower()
    async with stub(port) as client:
        watching = await open_stream(client, pb.StreamBlocksRequest(include_pending=True))
        blind = await open_stream(client)
        first = await watching.next()
        assert first.HasField("head")
        await blind.next()
        native_tx = str(
            node.rpc("eth_sendTransaction", {"from": sender, "to": payee, "value": hex(123)})
        )
        token_tx = token.transfer(sender, payee, 456)

        seen: dict[tuple[str, int], pb.Transfer] = {}
        while len(seen) < 2:
            pending = await _next_pending(watching)
            assert pending.observe_time.seconds > 0
            for t in pending.transfers:
                seen[(t.tx_hash, t.index)] = t
        native, tokens = seen[(native_tx, 0)], seen[(token_tx, 1)]
        assert (native.to_address, native.amount, native.success) == (payee, "123", False)
        assert tokens.asset.endswith(f"/erc20:{token.address}")
        assert (tokens.from_address, tokens.to_address, tokens.amount) == (
            sender.lower(),
            payee,
            "456",
        )
        assert node.head() == first.head.head.height  # nothing mined yet

        node.mine()
        block = (await watching.next_non_head()).block
        mined = {(t.tx_hash, t.index): t for t in block.transfers}
        # The block carries the same keys: a consumer moves one record each.
        for key, sighting in seen.items():
            assert mined[key].amount == sighting.amount
            assert mined[key].to_address == sighting.to_address
            assert mined[key].success
        # Announced once: nothing but heads and blocks after the mined block.
        later = await watching.collect_for(1.5)
        assert not any(
            e.HasField("pending")
            and any(t.tx_hash in (native_tx, token_tx) for t in e.pending.transfers)
            for e in later
        )
        # A stream that did not opt in never gets Pending events.
        blind_events = await blind.collect_for(0.5)
        assert blind_events and not any(e.HasField("pending") for e in blind_events)
        watching.close()
        blind.close()


async def test_a_stream_that_joins_later_sees_new_transactions_only(
    mempool_chain: tuple[Anvil, Token, int],
) -> None:
    node, _token, port = mempool_chain
    sender, payee = node.accounts()[1], node.accounts()[6].lower()
    async with stub(port) as client:
        early = await open_stream(client, pb.StreamBlocksRequest(include_pending=True))
        await early.next()
        before = str(
            node.rpc("eth_sendTransaction", {"from": sender, "to": payee, "value": hex(7)})
        )
        assert (await _next_pending(early)).transfers[0].tx_hash == before
        late = await open_stream(client, pb.StreamBlocksRequest(include_pending=True))
        await late.next()
        after = str(node.rpc("eth_sendTransaction", {"from": sender, "to": payee, "value": hex(8)}))
        assert [t.tx_hash for t in (await _next_pending(late)).transfers] == [after]
        assert [t.tx_hash for t in (await _next_pending(early)).transfers] == [after]
        node.mine()
        early.close()
        late.close()
