"""Transfer normalisation from raw node JSON (pure, no node)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.evm.normalise import (
    TRANSFER_TOPIC,
    block_transfers,
    native_asset,
    receipt_succeeded,
    token_asset,
)

TOKEN = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
OTHER_TOKEN = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
ALICE = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
BOB = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"


def _topic(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def _log(
    tx: str,
    tx_index: int,
    log_index: int,
    amount: int,
    token: str = TOKEN,
    sender: str = ALICE,
    receiver: str = BOB,
    **extra: object,
) -> dict[str, object]:
    return {
        "address": token,
        "topics": [TRANSFER_TOPIC, _topic(sender), _topic(receiver)],
        "data": "0x" + f"{amount:064x}",
        "transactionHash": tx,
        "transactionIndex": hex(tx_index),
        "logIndex": hex(log_index),
        **extra,
    }


def _tx(tx_hash: str, index: int, value: int, to: str | None = BOB) -> dict[str, object]:
    return {
        "hash": tx_hash,
        "transactionIndex": hex(index),
        "from": ALICE.upper().replace("0X", "0x"),
        "to": to,
        "value": hex(value),
    }


def _hash(n: int) -> str:
    return "0x" + f"{n:064x}"


def test_token_log_becomes_transfer_with_addresses_from_topics_and_amount_from_data() -> None:
    (transfer,) = block_transfers(1, [], [_log(_hash(1), 0, 7, 10**30)], {}, {TOKEN})
    assert transfer.asset == f"eip155:1/erc20:{TOKEN}"
    assert (transfer.from_address, transfer.to_address) == (ALICE, BOB)
    assert transfer.amount == 10**30
    assert transfer.index == 1
    assert transfer.log_index == 7
    assert transfer.success


def test_native_value_is_index_zero_and_success_comes_from_receipt() -> None:
    txs = [_tx(_hash(1), 0, 5), _tx(_hash(2), 1, 0), _tx(_hash(3), 2, 9)]
    receipts = {_hash(1): {"status": "0x1"}, _hash(3): {"status": "0x0"}}
    transfers = block_transfers(137, txs, [], receipts, {TOKEN})
    assert [(t.tx_hash, t.index, t.amount, t.success) for t in transfers] == [
        (_hash(1), 0, 5, True),
        (_hash(3), 0, 9, False),
    ]
    assert transfers[0].asset == "eip155:137/slip44:60"
    assert transfers[0].from_address == ALICE  # lowercased


def test_value_to_contract_creation_goes_to_created_address() -> None:
    created = "0x" + "ab" * 20
    transfers = block_transfers(
        1,
        [_tx(_hash(1), 0, 3, to=None)],
        [],
        {_hash(1): {"status": "0x1", "contractAddress": created}},
        set(),
    )
    assert transfers[0].to_address == created


def test_index_counts_tracked_logs_per_transaction_in_log_order() -> None:
    logs = [
        _log(_hash(2), 1, 5, 1),
        _log(_hash(1), 0, 2, 2, token=OTHER_TOKEN),
        _log(_hash(1), 0, 1, 3),
        _log(_hash(2), 1, 4, 4, token=OTHER_TOKEN),
    ]
    transfers = block_transfers(1, [], logs, {}, {TOKEN, OTHER_TOKEN})
    assert [(t.tx_hash, t.index, t.amount) for t in transfers] == [
        (_hash(1), 1, 3),
        (_hash(1), 2, 2),
        (_hash(2), 1, 4),
        (_hash(2), 2, 1),
    ]


def test_untracked_erc721_removed_and_malformed_logs_are_skipped() -> None:
    erc721 = _log(_hash(1), 0, 1, 0)
    erc721["topics"] = [*erc721["topics"], _topic(BOB)]  # type: ignore[misc]
    erc721["data"] = "0x"
    bad_topic = _log(_hash(1), 0, 2, 1)
    bad_topic["topics"] = [TRANSFER_TOPIC, "0x" + "f" * 64, _topic(BOB)]
    logs = [
        _log(_hash(1), 0, 0, 1, token=OTHER_TOKEN),
        erc721,
        _log(_hash(1), 0, 3, 1, removed=True),
        bad_topic,
        {**_log(_hash(1), 0, 4, 1), "data": "0x12"},
    ]
    assert block_transfers(1, [], logs, {}, {TOKEN}) == []


def test_index_is_stable_when_the_tx_moves_to_another_block_position() -> None:
    first = block_transfers(1, [], [_log(_hash(9), 0, 0, 1), _log(_hash(9), 0, 1, 2)], {}, {TOKEN})
    moved = block_transfers(
        1, [], [_log(_hash(9), 5, 40, 1), _log(_hash(9), 5, 41, 2)], {}, {TOKEN}
    )
    assert [(t.index, t.amount) for t in first] == [(t.index, t.amount) for t in moved]


def test_receipt_without_status_counts_as_success() -> None:
    assert receipt_succeeded({"root": "0x" + "00" * 32})
    assert not receipt_succeeded({"status": "0x0"})


def test_asset_ids_are_caip19_lowercase() -> None:
    assert native_asset(1) == "eip155:1/slip44:60"
    assert token_asset(10, "0xABCDEF0000000000000000000000000000000001") == (
        "eip155:10/erc20:0xabcdef0000000000000000000000000000000001"
    )


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2**256 - 1)), max_size=30),
    st.lists(st.integers(0, 2**100), max_size=6),
)
def test_every_log_and_value_tx_yields_one_transfer_with_unique_tx_index_pairs(
    log_specs: list[tuple[int, int]], values: list[int]
) -> None:
    logs = [
        _log(_hash(tx), tx, position, amount) for position, (tx, amount) in enumerate(log_specs)
    ]
    txs = [_tx(_hash(i), i, v) for i, v in enumerate(values)]
    receipts = {_hash(i): {"status": "0x1"} for i in range(len(values))}
    transfers = block_transfers(1, txs, logs, receipts, {TOKEN})
    assert len(transfers) == len(logs) + sum(1 for v in values if v > 0)
    keys = [(t.tx_hash, t.index) for t in transfers]
    assert len(set(keys)) == len(keys)
    assert sum(t.amount for t in transfers if t.index) == sum(a for _, a in log_specs)
    # Block order: by transaction position, native first, then logs in log order.
    order = [(int(t.tx_hash, 16), t.index) for t in transfers]
    assert order == sorted(order)
    for tx in {t.tx_hash for t in transfers}:
        indexes = sorted(t.index for t in transfers if t.tx_hash == tx and t.index)
        assert indexes == list(range(1, len(indexes) + 1))
