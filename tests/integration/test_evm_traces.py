"""Both trace formats of a real node (anvil) describe the same internal
transfers: a contract's batch payment, and a payment undone by a revert."""

from __future__ import annotations

from adapters.evm.traces import (
    INTERNAL_INDEX_BASE,
    TraceMethod,
    call_tracer_transfers,
    trace_block_transfers,
    trace_request,
)
from localstack.anvil import Anvil
from localstack.forwarder import deploy

PAYEE_A = "0x00000000000000000000000000000000000a11ce"
PAYEE_B = "0x0000000000000000000000000000000000000b0b"


def test_call_tracer_and_trace_block_agree_on_anvil(anvil: Anvil) -> None:
    sender, deployer = anvil.accounts()[3], anvil.accounts()[4]
    forwarder = deploy(anvil.rpc, deployer)
    # Automine: one block per transaction. Put both in one block to check positions.
    anvil.rpc("evm_setAutomine", False)
    try:
        split = forwarder.split(sender, [(PAYEE_A, 5), (PAYEE_B, 7)])
        reverted = forwarder.forward_reverted(sender, PAYEE_A, 11)
        anvil.mine(1)
    finally:
        anvil.rpc("evm_setAutomine", True)
    receipt = anvil.rpc.wait_receipt(split)
    assert anvil.rpc.wait_receipt(reverted)["blockHash"] == receipt["blockHash"]
    block = anvil.rpc("eth_getBlockByHash", receipt["blockHash"], False)
    block_hash = str(block["hash"]).lower()
    height = int(block["number"], 16)
    hashes = [str(h).lower() for h in block["transactions"]]
    assert set(hashes) == {split, reverted}

    by_call_tracer = call_tracer_transfers(
        anvil.chain_id,
        hashes,
        anvil.rpc(*_flat(trace_request(TraceMethod.CALL_TRACER, block_hash, height))),
    )
    by_trace_block = trace_block_transfers(
        anvil.chain_id,
        block_hash,
        hashes,
        anvil.rpc(*_flat(trace_request(TraceMethod.TRACE_BLOCK, block_hash, height))),
    )
    assert by_call_tracer == by_trace_block
    position = hashes.index(split)
    assert [(p, t.tx_hash, t.index, t.to_address, t.amount) for p, t in by_call_tracer] == sorted(
        [
            (position, split, INTERNAL_INDEX_BASE, PAYEE_A, 5),
            (position, split, INTERNAL_INDEX_BASE + 1, PAYEE_B, 7),
            # The reverted sub-call (2^30) and its payment to A (2^30 + 1) moved
            # nothing; the forwarder then returned the 11 wei to the sender.
            (1 - position, reverted, INTERNAL_INDEX_BASE + 2, sender, 11),
        ]
    )
    assert all(t.from_address == forwarder.address for _, t in by_call_tracer)


def _flat(request: tuple[str, list[object]]) -> list[object]:
    method, params = request
    return [method, *params]
