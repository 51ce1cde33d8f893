"""adapters/evm/balances.py's pure parts: query checks and one transaction's
node objects to its status and transfers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.evm.balances import (
    MAX_BALANCE_QUERIES,
    Query,
    balance_call,
    mined,
    parse_hashes,
    parse_queries,
)
from adapters.evm.errors import ServiceError
from adapters.evm.normalise import TRANSFER_TOPIC

TOKEN = "0x" + "a" * 40
NATIVE = "eip155:1/slip44:60"
TOKEN_ASSET = f"eip155:1/erc20:{TOKEN}"
hex_address = st.text(alphabet="0123456789abcdefABCDEF", min_size=40, max_size=40).map(
    lambda h: "0x" + h
)


@given(st.lists(st.tuples(hex_address, st.sampled_from([NATIVE, TOKEN_ASSET])), max_size=50))
def test_property_valid_queries_parse_to_lowercase_in_order(
    queries: list[tuple[str, str]],
) -> None:
    parsed = parse_queries(1, {TOKEN}, queries)
    assert [q.address for q in parsed] == [a.lower() for a, _ in queries]
    assert [q.contract for q in parsed] == [None if s == NATIVE else TOKEN for _, s in queries]


@pytest.mark.parametrize(
    ("queries", "reason", "field"),
    [
        ([("0x" + "1" * 39, NATIVE)], "INVALID_ADDRESS", "queries[0].address"),
        ([("0x" + "1" * 40 + "\n", NATIVE)], "INVALID_ADDRESS", "queries[0].address"),
        ([("0x" + "1" * 40, "eip155:2/slip44:60")], "UNKNOWN_ASSET", "queries[0].asset"),
        ([("0x" + "1" * 40, "eip155:1/erc20:0x" + "b" * 40)], "UNKNOWN_ASSET", "queries[0].asset"),
        ([("0x" + "1" * 40, TOKEN_ASSET.upper())], "UNKNOWN_ASSET", "queries[0].asset"),
        ([("0x" + "1" * 40, NATIVE)] * (MAX_BALANCE_QUERIES + 1), "TOO_MANY_QUERIES", "queries"),
    ],
)
def test_bad_queries_name_the_field(
    queries: list[tuple[str, str]], reason: str, field: str
) -> None:
    with pytest.raises(ServiceError) as refused:
        parse_queries(1, {TOKEN}, queries)
    assert (refused.value.reason, refused.value.field) == (reason, field)


def test_balance_calls_read_at_the_block() -> None:
    owner = "0x" + "c" * 40
    assert balance_call(Query(owner, None), "0x10") == ("eth_getBalance", [owner, "0x10"])
    method, params = balance_call(Query(owner, TOKEN), "0x10")
    assert method == "eth_call" and params[1] == "0x10"
    assert params[0] == {"to": TOKEN, "data": "0x70a08231" + "0" * 24 + "c" * 40}


def test_hashes_are_checked_and_lowercased() -> None:
    assert parse_hashes(["0x" + "AB" * 32]) == ["0x" + "ab" * 32]
    with pytest.raises(ServiceError) as refused:
        parse_hashes(["0x" + "ab" * 32, "0x" + "ab" * 32 + "\n"])
    assert refused.value.field == "tx_hashes[1]"


TX = "0x" + "11" * 32
SENDER, RECEIVER = "0x" + "2" * 40, "0x" + "3" * 40


def _receipt(status: str = "0x1", logs: list[object] | None = None) -> dict[str, object]:
    return {
        "status": status,
        "blockNumber": "0x7",
        "blockHash": "0x" + "Ee" * 32,
        "gasUsed": "0x5208",
        "effectiveGasPrice": "0x3",
        "from": SENDER,
        "to": TOKEN,
        "logs": logs or [],
    }


def _log(amount: int) -> dict[str, object]:
    return {
        "address": TOKEN,
        "topics": [TRANSFER_TOPIC, "0x" + "0" * 24 + SENDER[2:], "0x" + "0" * 24 + RECEIVER[2:]],
        "data": "0x" + f"{amount:064x}",
        "transactionHash": TX,
        "transactionIndex": "0x0",
        "logIndex": "0x4",
    }


def test_a_mined_token_transfer() -> None:
    tx = {"hash": TX, "from": SENDER, "to": TOKEN, "value": "0x0", "transactionIndex": "0x0"}
    got = mined(1, {TOKEN}, TX, tx, _receipt(logs=[_log(500)]))
    assert got.block is not None and (got.block.height, got.block.hash) == (7, "0x" + "ee" * 32)
    assert (got.status, got.fee_paid_wei) == ("succeeded", 21000 * 3)
    (t,) = got.transfers
    assert (t.index, t.asset, t.from_address, t.to_address, t.amount) == (
        1,
        TOKEN_ASSET,
        SENDER,
        RECEIVER,
        500,
    )


def test_reverted_pending_and_unknown() -> None:
    tx = {"hash": TX, "from": SENDER, "to": RECEIVER, "value": "0x5", "transactionIndex": "0x0"}
    reverted = mined(1, {TOKEN}, TX, tx, _receipt(status="0x0"))
    assert reverted.status == "reverted"
    assert [(t.amount, t.success) for t in reverted.transfers] == [(5, False)]
    assert mined(1, {TOKEN}, TX, tx, None).status == "pending"
    unknown = mined(1, {TOKEN}, TX, None, None)
    assert (unknown.status, unknown.block, unknown.transfers) == ("unknown", None, [])
