"""Mempool transactions → sightings (pure): calldata decoding and index rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.evm.normalise import (
    TRANSFER_FROM_SELECTOR,
    TRANSFER_SELECTOR,
    TRANSFER_TOPIC,
    block_transfers,
    native_asset,
    pending_transfers,
    token_asset,
    token_call,
)

TOKEN = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
ALICE = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
BOB = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
CAROL = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
TX = "0x" + "ab" * 32
CHAIN = 31337

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
amounts = st.integers(min_value=1, max_value=2**256 - 1)


def _word(value: int | str) -> str:
    if isinstance(value, str):
        return value[2:].rjust(64, "0")
    return f"{value:064x}"


def transfer_data(to: str, amount: int) -> str:
    return "0x" + TRANSFER_SELECTOR + _word(to) + _word(amount)


def transfer_from_data(holder: str, to: str, amount: int) -> str:
    return "0x" + TRANSFER_FROM_SELECTOR + _word(holder) + _word(to) + _word(amount)


def _tx(to: str | None, value: int = 0, data: str = "0x", **extra: object) -> dict[str, object]:
    return {"hash": TX, "from": ALICE, "to": to, "value": hex(value), "input": data, **extra}


@given(addresses, amounts)
def test_transfer_calldata_round_trips(to: str, amount: int) -> None:
    assert token_call(transfer_data(to, amount)) == (None, to, amount)


@given(addresses, addresses, amounts, st.binary(max_size=40))
def test_transfer_from_calldata_round_trips_with_trailing_bytes(
    holder: str, to: str, amount: int, tail: bytes
) -> None:
    assert token_call(transfer_from_data(holder, to, amount) + tail.hex()) == (holder, to, amount)


@given(st.text(max_size=200))
def test_arbitrary_input_never_raises(data: str) -> None:
    token_call(data)
    token_call("0x" + data)
    pending_transfers(CHAIN, _tx(TOKEN, data="0x" + data), {TOKEN})


def test_malformed_calldata_is_not_a_transfer() -> None:
    good = transfer_data(BOB, 5)
    assert token_call(good[:-2]) is None  # one byte short
    assert token_call("0x095ea7b3" + good[10:]) is None  # approve, not transfer
    assert token_call(good.replace("0x", "", 1)) is None
    assert token_call(good[:10] + "zz" + good[12:]) is None
    dirty = "0x" + TRANSFER_SELECTOR + "01" + _word(BOB)[2:] + _word(5)
    assert token_call(dirty) is None  # upper bytes of the address set: the token would revert
    assert token_call(None) is None


def test_native_value_is_index_zero_and_never_a_success() -> None:
    [t] = pending_transfers(CHAIN, _tx(BOB, value=7), {TOKEN})
    assert (t.tx_hash, t.index, t.asset, t.from_address, t.to_address, t.amount, t.success) == (
        TX,
        0,
        native_asset(CHAIN),
        ALICE,
        BOB,
        7,
        False,
    )


def test_token_transfer_is_index_one_paid_by_the_sender() -> None:
    [t] = pending_transfers(
        CHAIN, _tx(TOKEN.upper().replace("0X", "0x"), data=transfer_data(BOB, 9)), {TOKEN}
    )
    assert (t.index, t.asset, t.from_address, t.to_address, t.amount) == (
        1,
        token_asset(CHAIN, TOKEN),
        ALICE,
        BOB,
        9,
    )


def test_transfer_from_is_paid_by_the_holder() -> None:
    [t] = pending_transfers(CHAIN, _tx(TOKEN, data=transfer_from_data(CAROL, BOB, 3)), {TOKEN})
    assert (t.index, t.from_address, t.to_address, t.amount) == (1, CAROL, BOB, 3)


def test_untracked_tokens_creations_and_zero_amounts_are_skipped() -> None:
    assert pending_transfers(CHAIN, _tx(CAROL, data=transfer_data(BOB, 9)), {TOKEN}) == []
    assert pending_transfers(CHAIN, _tx(None, value=5), {TOKEN}) == []
    assert pending_transfers(CHAIN, _tx(TOKEN, data=transfer_data(BOB, 0)), {TOKEN}) == []
    assert pending_transfers(CHAIN, _tx(BOB, value=0), {TOKEN}) == []
    assert pending_transfers(CHAIN, {"hash": TX, "value": "0x1"}, {TOKEN}) == []
    assert pending_transfers(CHAIN, {**_tx(BOB), "value": "12"}, {TOKEN}) == []  # not hex


@given(addresses, amounts)
def test_a_sighting_has_the_key_of_its_mined_transfer(to: str, amount: int) -> None:
    """The same transaction, mined with one Transfer log, gives the same
    (tx_hash, index, asset, from, to, amount): the core moves one row."""
    [sighting] = pending_transfers(CHAIN, _tx(TOKEN, data=transfer_data(to, amount)), {TOKEN})
    log = {
        "address": TOKEN,
        "topics": [TRANSFER_TOPIC, "0x" + _word(ALICE), "0x" + _word(to)],
        "data": "0x" + _word(amount),
        "transactionHash": TX,
        "transactionIndex": "0x0",
        "logIndex": "0x4",
    }
    [mined] = block_transfers(CHAIN, [], [log], {}, {TOKEN})
    key = ("tx_hash", "index", "asset", "from_address", "to_address", "amount")
    assert [getattr(sighting, k) for k in key] == [getattr(mined, k) for k in key]
