"""Call traces of a block → its internal native-value transfers.

ETH that reaches an address through a contract (a Safe executing a payment,
an exchange's batcher) moves in a call frame below the transaction's top
frame: no log records it and the transaction's own `value` names only the
contract. Nodes that can trace (geth, reth, erigon, anvil) give every frame
of every transaction of a block in one call, either geth's `callTracer`
(debug_traceBlockByHash) or OpenEthereum's `trace_block`; this module turns
either answer into Transfers.

Pure: no I/O. The node's JSON is untrusted; a trace that does not line up
with the block's transactions raises TraceMismatch (the fetcher retries)
rather than being guessed at, and a frame that does not parse is skipped.

Index scheme: the k-th value-moving internal frame of a transaction, in
execution (pre-)order, gets `INTERNAL_INDEX_BASE + k`. Value-moving means a
CALL, CREATE, CREATE2 or SELFDESTRUCT below the top frame with value > 0,
counted whether it reverted or not, so the numbering does not depend on how
reverts are read; only the non-reverted ones become Transfers. The same
execution gives the same frames in the same order on every fetch, so a
re-fetched or re-included block repeats the same (tx_hash, index): the core's
payment key, which keeps undo/redo exactly-once. The base keeps the scheme
apart from the native value (0) and the token logs (1, 2, ...: bounded by the
block gas limit far below 2^30) and still fits the core's int4 column.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.evm.normalise import Transfer, native_asset, quantity

INTERNAL_INDEX_BASE = 1 << 30
# PostgreSQL's integer (the core's transfer_index) tops out at 2^31 - 1.
MAX_INTERNAL_FRAMES = (1 << 31) - 1 - INTERNAL_INDEX_BASE

# Frame types that move value from one account to another. DELEGATECALL and
# STATICCALL move none; CALLCODE runs another's code on the caller's own
# balance, so its value never leaves the caller.
_CALL_TRACER_MOVES = frozenset({"CALL", "CREATE", "CREATE2", "SELFDESTRUCT"})


class TraceMethod(enum.Enum):
    """How the adapter asks its node for a block's call frames (per chain)."""

    OFF = "off"
    CALL_TRACER = "call_tracer"  # debug_traceBlockByHash with {"tracer": "callTracer"}
    TRACE_BLOCK = "trace_block"  # OpenEthereum/erigon/reth trace_block


class TraceMismatch(ValueError):
    """The trace does not describe this block's transactions."""


def trace_request(method: TraceMethod, block_hash: str, height: int) -> tuple[str, list[Any]]:
    """The JSON-RPC call that fetches the block's traces (not for OFF).

    trace_block takes only a number (OpenEthereum's signature; anvil refuses
    a hash), so mid-reorg it may answer for another block at that height:
    every entry carries its blockHash, which trace_block_transfers checks.
    """
    match method:
        case TraceMethod.CALL_TRACER:
            return "debug_traceBlockByHash", [block_hash, {"tracer": "callTracer"}]
        case TraceMethod.TRACE_BLOCK:
            return "trace_block", [hex(height)]
        case TraceMethod.OFF:
            raise ValueError("tracing is off: there is nothing to request")


def _address(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) != 42 or not value.startswith(("0x", "0X")):
        return None
    try:
        int(value[2:], 16)
    except ValueError:
        return None
    return value.lower()


def _value(value: Any) -> int:
    """A frame's value; 0 when absent (static calls) or unreadable."""
    try:
        return quantity(value)
    except ValueError:
        return 0


def _internal(
    chain_id: int, tx_hash: str, frames: Sequence[tuple[str | None, str | None, int, bool]]
) -> list[Transfer]:
    """Transfers from (from, to, value, reverted) of one transaction's
    value-moving internal frames in execution order."""
    if len(frames) > MAX_INTERNAL_FRAMES:
        raise TraceMismatch(f"{tx_hash}: {len(frames)} value-moving frames is not a real trace")
    out = []
    for k, (sender, receiver, value, reverted) in enumerate(frames):
        if reverted or sender is None or receiver is None:
            continue
        out.append(
            Transfer(
                tx_hash=tx_hash,
                index=INTERNAL_INDEX_BASE + k,
                asset=native_asset(chain_id),
                from_address=sender,
                to_address=receiver,
                amount=value,
                success=True,
            )
        )
    return out


def _call_tracer_frames(top: Mapping[str, Any]) -> list[tuple[str | None, str | None, int, bool]]:
    frames = []
    # Depth-first, children in order: the order the EVM executed them.
    stack: list[tuple[Mapping[str, Any], bool, bool]] = [(top, False, True)]
    while stack:
        frame, reverted_above, is_top = stack.pop()
        reverted = reverted_above or bool(frame.get("error"))
        value = _value(frame.get("value"))
        if not is_top and value > 0 and str(frame.get("type", "")).upper() in _CALL_TRACER_MOVES:
            frames.append((_address(frame.get("from")), _address(frame.get("to")), value, reverted))
        children = frame.get("calls") or []
        if not isinstance(children, list):
            continue
        for child in reversed(children):
            if isinstance(child, Mapping):
                stack.append((child, reverted, False))
    return frames


def call_tracer_transfers(
    chain_id: int, tx_hashes: Sequence[str], traces: Any
) -> list[tuple[int, Transfer]]:
    """(transaction position, transfer) of every internal transfer in a
    debug_traceBlockBy* callTracer answer for a block whose transactions are
    tx_hashes (lowercase, in block order)."""
    if not isinstance(traces, list) or len(traces) != len(tx_hashes):
        got = len(traces) if isinstance(traces, list) else type(traces).__name__
        raise TraceMismatch(f"trace has {got} entries for {len(tx_hashes)} transactions")
    out: list[tuple[int, Transfer]] = []
    for position, (tx_hash, entry) in enumerate(zip(tx_hashes, traces, strict=True)):
        if not isinstance(entry, Mapping):
            raise TraceMismatch(f"trace entry {position} is not an object")
        named = entry.get("txHash")
        if named is not None and str(named).lower() != tx_hash:
            raise TraceMismatch(f"trace entry {position} is for {named}, not {tx_hash}")
        top = entry.get("result")
        if not isinstance(top, Mapping):
            # geth reports a transaction its tracer failed on as {"error": ...}.
            raise TraceMismatch(f"no call frame for {tx_hash}: {entry.get('error')!r}")
        out.extend((position, t) for t in _internal(chain_id, tx_hash, _call_tracer_frames(top)))
    return out


def _trace_block_frame(trace: Mapping[str, Any]) -> tuple[str | None, str | None, int] | None:
    """(from, to, value) of a trace_block entry that moves value; None else."""
    action = trace.get("action")
    if not isinstance(action, Mapping):
        return None
    kind = trace.get("type")
    if kind == "call":
        if action.get("callType") != "call":
            return None
        return _address(action.get("from")), _address(action.get("to")), _value(action.get("value"))
    if kind == "create":
        result = trace.get("result")
        created = result.get("address") if isinstance(result, Mapping) else None
        return _address(action.get("from")), _address(created), _value(action.get("value"))
    if kind == "suicide":
        return (
            _address(action.get("address")),
            _address(action.get("refundAddress")),
            _value(action.get("balance")),
        )
    return None  # block and uncle rewards, unknown kinds


def trace_block_transfers(
    chain_id: int, block_hash: str, tx_hashes: Sequence[str], traces: Any
) -> list[tuple[int, Transfer]]:
    """(transaction position, transfer) of every internal transfer in a
    trace_block answer, for the block block_hash with transactions tx_hashes."""
    if not isinstance(traces, list):
        raise TraceMismatch(f"trace_block answered {type(traces).__name__}, not a list")
    positions = {h: i for i, h in enumerate(tx_hashes)}
    per_tx: dict[str, list[tuple[tuple[int, ...], Mapping[str, Any]]]] = {}
    for trace in traces:
        if not isinstance(trace, Mapping):
            raise TraceMismatch("a trace_block entry is not an object")
        if str(trace.get("blockHash", "")).lower() != block_hash:
            raise TraceMismatch(f"trace from block {trace.get('blockHash')}, not {block_hash}")
        tx_hash = trace.get("transactionHash")
        if tx_hash is None:
            continue  # rewards belong to no transaction
        tx_hash = str(tx_hash).lower()
        if tx_hash not in positions:
            raise TraceMismatch(f"trace of {tx_hash}, which is not in block {block_hash}")
        address = trace.get("traceAddress")
        if not isinstance(address, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in address
        ):
            raise TraceMismatch(f"trace of {tx_hash} has no traceAddress")
        per_tx.setdefault(tx_hash, []).append((tuple(address), trace))
    out: list[tuple[int, Transfer]] = []
    for tx_hash, entries in per_tx.items():
        # Lexicographic traceAddress order is execution (pre-)order.
        entries.sort(key=lambda item: item[0])
        failed: set[tuple[int, ...]] = set()
        frames = []
        for address, trace in entries:
            reverted = bool(trace.get("error")) or any(
                address[:depth] in failed for depth in range(len(address))
            )
            if reverted:
                failed.add(address)
            if not address:
                continue  # the top frame: the transaction's own value
            moved = _trace_block_frame(trace)
            if moved is not None and moved[2] > 0:
                frames.append((moved[0], moved[1], moved[2], reverted))
        position = positions[tx_hash]
        out.extend((position, t) for t in _internal(chain_id, tx_hash, frames))
    out.sort(key=lambda item: (item[0], item[1].index))
    return out
