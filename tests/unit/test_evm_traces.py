"""Call traces → internal transfers (pure, no node): the two trace formats,
reverts, and the index scheme that must never collide and never change."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.evm.normalise import TRANSFER_TOPIC, block_transfers, native_asset
from adapters.evm.traces import (
    INTERNAL_INDEX_BASE,
    TraceMethod,
    TraceMismatch,
    call_tracer_transfers,
    trace_block_transfers,
    trace_request,
)

CHAIN = 31337
BLOCK = "0x" + "bb" * 32
ALICE = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
SAFE = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
DEPOSIT = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
OTHER = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
TX = "0x" + "11" * 32
TX2 = "0x" + "22" * 32


@dataclass
class Frame:
    """A call frame, rendered to either node format by the helpers below."""

    kind: str  # CALL, STATICCALL, DELEGATECALL, CALLCODE, CREATE, CREATE2, SELFDESTRUCT
    sender: str
    receiver: str
    value: int
    failed: bool = False
    calls: list[Frame] = field(default_factory=list)


def call_tracer(frame: Frame) -> dict[str, object]:
    out: dict[str, object] = {
        "type": frame.kind,
        "from": frame.sender,
        "to": frame.receiver,
        "gas": "0x0",
        "gasUsed": "0x0",
        "input": "0x",
    }
    if frame.kind not in ("STATICCALL",):
        out["value"] = hex(frame.value)
    if frame.failed:
        out["error"] = "execution reverted"
    if frame.calls:
        out["calls"] = [call_tracer(c) for c in frame.calls]
    return out


def trace_block(frame: Frame, tx_hash: str, position: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []

    def walk(f: Frame, address: list[int]) -> None:
        entry: dict[str, object] = {
            "blockHash": BLOCK,
            "blockNumber": 7,
            "transactionHash": tx_hash,
            "transactionPosition": position,
            "traceAddress": address,
            "subtraces": len(f.calls),
        }
        if f.kind in ("CREATE", "CREATE2"):
            entry["type"] = "create"
            entry["action"] = {"from": f.sender, "value": hex(f.value), "init": "0x"}
            entry["result"] = {"address": f.receiver, "code": "0x", "gasUsed": "0x0"}
        elif f.kind == "SELFDESTRUCT":
            entry["type"] = "suicide"
            entry["action"] = {
                "address": f.sender,
                "refundAddress": f.receiver,
                "balance": hex(f.value),
            }
        else:
            entry["type"] = "call"
            entry["action"] = {
                "callType": f.kind.lower(),
                "from": f.sender,
                "to": f.receiver,
                "value": hex(f.value),
                "input": "0x",
            }
        if f.failed:
            entry["error"] = "Reverted"
        out.append(entry)
        for i, child in enumerate(f.calls):
            walk(child, [*address, i])

    walk(frame, [])
    # Nodes list traces in execution order; shuffled, the order must be rebuilt.
    random.Random(len(out)).shuffle(out)
    return out


def call_tracer_block(tops: list[tuple[str, Frame]]) -> list[dict[str, object]]:
    return [{"txHash": h, "result": call_tracer(f)} for h, f in tops]


def trace_block_block(tops: list[tuple[str, Frame]]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for position, (h, f) in enumerate(tops):
        out.extend(trace_block(f, h, position))
    out.append({"blockHash": BLOCK, "type": "reward", "action": {"author": ALICE}})
    return out


def both(tops: list[tuple[str, Frame]]) -> list[list[tuple[int, object]]]:
    hashes = [h for h, _ in tops]
    return [
        call_tracer_transfers(CHAIN, hashes, call_tracer_block(tops)),
        trace_block_transfers(CHAIN, BLOCK, hashes, trace_block_block(tops)),
    ]


def test_a_safe_paying_a_deposit_address_is_one_internal_transfer() -> None:
    safe_tx = Frame(
        "CALL",
        ALICE,
        SAFE,
        0,
        calls=[
            Frame("DELEGATECALL", SAFE, OTHER, 5),  # the Safe's singleton: moves nothing
            Frame("CALL", SAFE, DEPOSIT, 10**18),
        ],
    )
    for found in both([(TX, safe_tx)]):
        assert len(found) == 1
        position, transfer = found[0]
        assert position == 0
        assert (transfer.tx_hash, transfer.index, transfer.asset) == (
            TX,
            INTERNAL_INDEX_BASE,
            native_asset(CHAIN),
        )
        assert (transfer.from_address, transfer.to_address, transfer.amount) == (
            SAFE,
            DEPOSIT,
            10**18,
        )
        assert transfer.success


def test_the_top_frame_static_delegate_callcode_and_zero_value_frames_are_not_transfers() -> None:
    tx = Frame(
        "CALL",
        ALICE,
        DEPOSIT,
        7,  # the transaction's own value: index 0, from the block, not the trace
        calls=[
            Frame("STATICCALL", DEPOSIT, OTHER, 0),
            Frame("DELEGATECALL", DEPOSIT, OTHER, 7),
            Frame("CALLCODE", DEPOSIT, OTHER, 7),
            Frame("CALL", DEPOSIT, OTHER, 0),
        ],
    )
    assert both([(TX, tx)]) == [[], []]


def test_creations_and_selfdestructs_with_value_are_transfers() -> None:
    tx = Frame(
        "CALL",
        ALICE,
        SAFE,
        0,
        calls=[Frame("CREATE2", SAFE, OTHER, 3), Frame("SELFDESTRUCT", SAFE, DEPOSIT, 4)],
    )
    for found in both([(TX, tx)]):
        assert [(t.index, t.to_address, t.amount) for _, t in found] == [
            (INTERNAL_INDEX_BASE, OTHER, 3),
            (INTERNAL_INDEX_BASE + 1, DEPOSIT, 4),
        ]


def test_a_reverted_frame_and_everything_below_it_moved_nothing_but_keep_their_numbers() -> None:
    tx = Frame(
        "CALL",
        ALICE,
        SAFE,
        0,
        calls=[
            Frame("CALL", SAFE, SAFE, 9, failed=True, calls=[Frame("CALL", SAFE, DEPOSIT, 9)]),
            Frame("CALL", SAFE, DEPOSIT, 2),
        ],
    )
    for found in both([(TX, tx)]):
        # The reverted pair holds 2^30 and 2^30 + 1: the survivor is + 2.
        assert [(t.index, t.amount) for _, t in found] == [(INTERNAL_INDEX_BASE + 2, 2)]


def test_a_reverted_transaction_has_no_internal_transfers() -> None:
    tx = Frame("CALL", ALICE, SAFE, 0, failed=True, calls=[Frame("CALL", SAFE, DEPOSIT, 9)])
    assert both([(TX, tx)]) == [[], []]


def test_traces_that_do_not_match_the_block_are_refused() -> None:
    frame = Frame("CALL", ALICE, SAFE, 0, calls=[Frame("CALL", SAFE, DEPOSIT, 1)])
    with pytest.raises(TraceMismatch):  # a transaction short
        call_tracer_transfers(CHAIN, [TX, TX2], call_tracer_block([(TX, frame)]))
    with pytest.raises(TraceMismatch):  # another transaction
        call_tracer_transfers(CHAIN, [TX2], call_tracer_block([(TX, frame)]))
    with pytest.raises(TraceMismatch):  # the tracer failed on it
        call_tracer_transfers(CHAIN, [TX], [{"txHash": TX, "error": "tracer panicked"}])
    with pytest.raises(TraceMismatch):
        call_tracer_transfers(CHAIN, [TX], None)
    with pytest.raises(TraceMismatch):  # another block
        trace_block_transfers(CHAIN, "0x" + "cc" * 32, [TX], trace_block_block([(TX, frame)]))
    with pytest.raises(TraceMismatch):  # a transaction the block does not have
        trace_block_transfers(CHAIN, BLOCK, [TX2], trace_block_block([(TX, frame)]))


def test_malformed_frames_are_skipped_not_guessed() -> None:
    top = call_tracer(Frame("CALL", ALICE, SAFE, 0, calls=[Frame("CALL", SAFE, DEPOSIT, 1)]))
    calls = top["calls"]
    assert isinstance(calls, list)
    calls.append({"type": "CALL", "from": SAFE, "to": "0xnot-an-address", "value": "0x5"})
    calls.append({"type": "CALL", "from": SAFE, "to": DEPOSIT, "value": "12"})  # not hex
    calls.append("junk")
    found = call_tracer_transfers(CHAIN, [TX], [{"txHash": TX, "result": top}])
    assert [(t.index, t.to_address, t.amount) for _, t in found] == [
        (INTERNAL_INDEX_BASE, DEPOSIT, 1)
    ]


def test_requests_by_method() -> None:
    assert trace_request(TraceMethod.CALL_TRACER, BLOCK, 7) == (
        "debug_traceBlockByHash",
        [BLOCK, {"tracer": "callTracer"}],
    )
    assert trace_request(TraceMethod.TRACE_BLOCK, BLOCK, 7) == ("trace_block", ["0x7"])
    with pytest.raises(ValueError):
        trace_request(TraceMethod.OFF, BLOCK, 7)


# -- properties --------------------------------------------------------------

ADDRESSES = st.sampled_from([ALICE, SAFE, DEPOSIT, OTHER])
KINDS = st.sampled_from(
    ["CALL", "CALL", "CALL", "STATICCALL", "DELEGATECALL", "CALLCODE", "CREATE", "SELFDESTRUCT"]
)


def frames(depth: int) -> st.SearchStrategy[Frame]:
    children = st.just([]) if depth == 0 else st.lists(frames(depth - 1), max_size=3)
    return st.builds(
        Frame,
        kind=KINDS,
        sender=ADDRESSES,
        receiver=ADDRESSES,
        value=st.integers(0, 3),
        failed=st.booleans() if depth < 3 else st.just(False),
        calls=children,
    )


TOPS = st.lists(
    frames(3).map(lambda f: Frame("CALL", ALICE, SAFE, f.value, False, [f])), max_size=4
)


def _reference(frame: Frame, reverted_above: bool, is_top: bool) -> list[tuple[int, bool]]:
    """(value, reverted) of value-moving frames in execution order, by recursion."""
    reverted = reverted_above or frame.failed
    moves = frame.kind in ("CALL", "CREATE", "CREATE2", "SELFDESTRUCT") and frame.value > 0
    out = [(frame.value, reverted)] if moves and not is_top else []
    for child in frame.calls:
        out.extend(_reference(child, reverted, False))
    return out


@given(TOPS)
def test_both_formats_agree_and_follow_the_reference(tops: list[Frame]) -> None:
    hashed = [(f"0x{i + 1:064x}", f) for i, f in enumerate(tops)]
    from_call_tracer, from_trace_block = both(hashed)
    assert from_call_tracer == from_trace_block
    expected = []
    for position, (tx_hash, top) in enumerate(hashed):
        for k, (value, reverted) in enumerate(_reference(top, False, True)):
            if not reverted:
                expected.append((position, tx_hash, INTERNAL_INDEX_BASE + k, value))
    assert [(p, t.tx_hash, t.index, t.amount) for p, t in from_call_tracer] == expected


@given(TOPS, st.integers(0, 40))
def test_indices_are_unique_stable_and_apart_from_native_and_token_ones(
    tops: list[Frame], token_logs: int
) -> None:
    hashed = [(f"0x{i + 1:064x}", f) for i, f in enumerate(tops)]
    traces = call_tracer_block(hashed)
    hashes = [h for h, _ in hashed]
    internal = call_tracer_transfers(CHAIN, hashes, traces)
    # A re-fetch is a fresh parse of the same JSON: the same keys, the same order.
    refetched = call_tracer_transfers(CHAIN, hashes, json.loads(json.dumps(traces)))
    assert refetched == internal

    # The whole block: each transaction's own value, token logs, internal frames.
    transactions = [
        {"hash": h, "from": ALICE, "to": SAFE, "value": hex(1), "transactionIndex": hex(i)}
        for i, h in enumerate(hashes)
    ]
    token = "0x" + "ee" * 20
    logs = [
        {
            "address": token,
            "topics": [
                TRANSFER_TOPIC,
                "0x" + ALICE[2:].rjust(64, "0"),
                "0x" + DEPOSIT[2:].rjust(64, "0"),
            ],
            "data": "0x" + f"{1:064x}",
            "transactionHash": hashes[n % len(hashes)],
            "transactionIndex": hex(n % len(hashes)),
            "logIndex": hex(n),
        }
        for n in range(token_logs if hashes else 0)
    ]
    transfers = block_transfers(CHAIN, transactions, logs, {}, {token}, internal)
    keys = [(t.tx_hash, t.index) for t in transfers]
    assert len(keys) == len(set(keys))
    for t in transfers:
        if t.asset == native_asset(CHAIN) and t.index != 0:
            assert INTERNAL_INDEX_BASE <= t.index < 2**31  # the core's int4 column
        else:
            assert t.index < INTERNAL_INDEX_BASE
    # Block order: by transaction, then native, tokens, internal.
    positions = {h: i for i, h in enumerate(hashes)}
    assert [(positions[t.tx_hash], t.index) for t in transfers] == sorted(
        (positions[t.tx_hash], t.index) for t in transfers
    )
