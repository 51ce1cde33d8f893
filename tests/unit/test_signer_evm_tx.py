"""Transaction decoding and signed encodings, checked against eth-account as an independent
implementation; strictness (what must NOT decode) as much as round-trips."""

from __future__ import annotations

import pytest
import rlp
from coincurve import PrivateKey
from eth_account import Account
from eth_utils.abi import function_signature_to_4byte_selector
from hypothesis import given
from hypothesis import strategies as st

from signer.chains.evm_tx import EvmTx, TxDecodeError, TxKind, decode_unsigned
from signer.chains.intent import Intent, IntentInvalid, IntentMismatch, mismatch, parse_intent
from signer.chains.transfer import TRANSFER_SELECTOR, Transfer, transfer_calldata, transfer_of
from signer.secp256k1 import address_of, normalise_low_s

uint = st.integers(min_value=0, max_value=2**256 - 1)
small = st.integers(min_value=0, max_value=2**64)
address = st.binary(min_size=20, max_size=20)
chain_id = st.integers(min_value=1, max_value=2**32)


@st.composite
def txs(draw: st.DrawFn) -> EvmTx:
    kind: TxKind = draw(st.sampled_from(["eip1559", "legacy"]))
    return EvmTx(
        kind=kind,
        chain_id=draw(chain_id),
        nonce=draw(small),
        gas=draw(small),
        gas_price=draw(small) if kind == "legacy" else 0,
        max_fee_per_gas=draw(small) if kind == "eip1559" else 0,
        max_priority_fee_per_gas=draw(small) if kind == "eip1559" else 0,
        to=draw(address),
        value=draw(uint),
        data=draw(st.binary(max_size=100)),
    )


@given(txs())
def test_decoding_round_trips(tx: EvmTx) -> None:
    assert decode_unsigned(tx.unsigned()) == tx


KEY = PrivateKey(bytes(31) + b"\x07")


@given(txs())
def test_signed_encoding_recovers_to_the_signer_with_eth_account(tx: EvmTx) -> None:
    compact = KEY.sign_recoverable(tx.signing_hash(), hasher=None)
    r, s = int.from_bytes(compact[:32], "big"), int.from_bytes(compact[32:64], "big")
    assert normalise_low_s(r, s) == (r, s)  # libsecp256k1 signs low-S
    raw = tx.signed(r, s, compact[64])
    assert Account.recover_transaction(raw).lower() == address_of(
        KEY.public_key.format(compressed=False)
    )


def test_legacy_v_is_eip155() -> None:
    tx = EvmTx("legacy", 5, 0, 21000, 1, 0, 0, b"\x11" * 20, 1, b"")
    assert rlp.decode(tx.signed(1, 2, 1))[6] == (1 + 35 + 2 * 5).to_bytes(1, "big")


def test_eip1559_is_typed_with_y_parity() -> None:
    tx = EvmTx("eip1559", 1, 0, 21000, 0, 2, 1, b"\x11" * 20, 1, b"")
    raw = tx.signed(1, 2, 1)
    assert raw[0] == 2 and rlp.decode(raw[1:])[9] == b"\x01"


def _legacy_fields(**over: object) -> list[object]:
    fields: dict[str, object] = dict(
        nonce=0, gas_price=1, gas=21000, to=b"\x11" * 20, value=5, data=b"", chain_id=1, r=0, s=0
    )
    fields.update(over)
    return list(fields.values())


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "empty"),
        (b"\x01" + rlp.encode([]), "unsupported_type"),
        (b"\x02\xc0", "bad_field_count"),
        (rlp.encode(_legacy_fields()[:6]), "no_replay_protection"),
        (rlp.encode(_legacy_fields(to=b"")), "contract_creation"),
        (rlp.encode(_legacy_fields(to=b"\x11" * 19)), "bad_field"),
        (rlp.encode(_legacy_fields(r=1)), "already_signed"),
        (rlp.encode(_legacy_fields(chain_id=0)), "bad_field"),
        (rlp.encode(_legacy_fields(value=b"\x00\x05")), "non_canonical"),
        (rlp.encode(_legacy_fields()) + b"\x00", "bad_rlp"),
        (
            b"\x02" + rlp.encode([1, 0, 1, 1, 21000, b"\x11" * 20, 0, b"", [[b"\x22" * 20, []]]]),
            "access_list",
        ),
    ],
)
def test_what_is_never_decoded(raw: bytes, problem: str) -> None:
    with pytest.raises(TxDecodeError) as refused:
        decode_unsigned(raw)
    assert refused.value.problem == problem


DEST = "0x" + "ab" * 20
APPROVE = bytes(function_signature_to_4byte_selector("approve(address,uint256)"))
TOKEN = "0x" + "cd" * 20


def _tx(to: str, value: int, data: bytes = b"", chain: int = 1) -> EvmTx:
    return EvmTx("eip1559", chain, 0, 60000, 0, 2, 1, bytes.fromhex(to[2:]), value, data)


def test_transfers_native_and_erc20() -> None:
    assert transfer_of(_tx(DEST, 7)) == Transfer(1, None, DEST, 7)
    assert transfer_of(_tx(TOKEN, 0, transfer_calldata(DEST, 9))) == Transfer(1, TOKEN, DEST, 9)


@pytest.mark.parametrize(
    ("tx", "problem"),
    [
        (_tx(TOKEN, 0, APPROVE + bytes(64)), "unknown_call"),  # approve
        (_tx(TOKEN, 0, transfer_calldata(DEST, 9) + b"\x00"), "calldata_length"),
        (_tx(TOKEN, 0, transfer_calldata(DEST, 9)[:-1]), "calldata_length"),
        (_tx(TOKEN, 1, transfer_calldata(DEST, 9)), "value_with_call"),
        (
            _tx(TOKEN, 0, TRANSFER_SELECTOR + b"\x01" + bytes(31) + bytes(32)),
            "bad_recipient",
        ),
    ],
)
def test_calls_other_than_a_plain_transfer_are_refused(tx: EvmTx, problem: str) -> None:
    with pytest.raises(TxDecodeError) as refused:
        transfer_of(tx)
    assert refused.value.problem == problem


def _intent(
    asset: str = "eip155:1/slip44:60",
    amount: str = "7",
    chain: str = "eip155:1",
    destination: str = DEST,
) -> Intent:
    return parse_intent(chain, asset, destination, amount, "PAYOUT", "ref")


def test_matching_intent_has_no_mismatch() -> None:
    assert mismatch(_intent(), Transfer(1, None, DEST, 7)) is None
    erc = _intent(f"eip155:1/erc20:{TOKEN}", "9", destination=DEST.upper().replace("0X", "0x"))
    assert mismatch(erc, Transfer(1, TOKEN, DEST, 9)) is None


@pytest.mark.parametrize(
    ("transfer", "field"),
    [
        (Transfer(1, None, DEST, 8), "amount"),
        (Transfer(1, None, "0x" + "ee" * 20, 7), "destination"),
        (Transfer(5, None, DEST, 7), "chain"),
        (Transfer(1, TOKEN, DEST, 7), "asset"),
    ],
)
def test_each_mismatch_names_its_field(transfer: Transfer, field: str) -> None:
    found = mismatch(_intent(), transfer)
    assert found is not None and found.field == field


@given(
    st.integers(min_value=1, max_value=2**256 - 1), st.integers(min_value=1, max_value=2**256 - 1)
)
def test_amount_mismatch_iff_amounts_differ(stated: int, actual: int) -> None:
    found = mismatch(_intent(amount=str(stated)), Transfer(1, None, DEST, actual))
    assert (found is None) == (stated == actual)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"asset": "eip155:1/erc20:0x" + "CD" * 20}, "asset"),  # CAIP-19 here is lowercase
        ({"asset": "eip155:1/slip44:61"}, "asset"),
        ({"amount": "0"}, "amount"),
        ({"amount": "07"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"destination": "0x1234"}, "destination"),
        ({"chain": "eip155:01"}, "chain"),
    ],
)
def test_malformed_intents(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(IntentInvalid) as refused:
        _intent(**kwargs)
    assert refused.value.field == field


@pytest.mark.parametrize("purpose", ["PAYOUT", "REFUND", "SWEEP", "GAS_FUNDING"])
def test_only_a_nonce_fill_states_a_zero_amount(purpose: str) -> None:
    """A nonce fill moves nothing; every other purpose moves something (its zero would be a
    transfer nobody asked for)."""
    fill = parse_intent("eip155:1", "eip155:1/slip44:60", DEST, "0", "NONCE_FILL", "r")
    assert fill.amount == 0 and mismatch(fill, Transfer(1, None, DEST, 0)) is None
    assert mismatch(fill, Transfer(1, None, DEST, 1)) is not None
    with pytest.raises(IntentInvalid) as refused:
        parse_intent("eip155:1", "eip155:1/slip44:60", DEST, "0", purpose, "r")
    assert refused.value.field == "amount"
    with pytest.raises(IntentInvalid) as refused:
        parse_intent("eip155:1", "eip155:1/slip44:60", DEST, "00", "NONCE_FILL", "r")
    assert refused.value.field == "amount"


def test_asset_on_another_chain_than_the_body_is_a_mismatch() -> None:
    with pytest.raises(IntentMismatch) as refused:
        _intent(asset="eip155:5/slip44:60")
    assert refused.value.field == "asset_chain"


@given(st.integers(min_value=1, max_value=3000), st.sampled_from([b"\x02", b""]))
def test_any_nesting_depth_is_a_decode_refusal_never_an_escape(depth: int, prefix: bytes) -> None:
    """Nested lists deep enough to exhaust the decoder's recursion are TxDecodeError
    (too_deep), like every other malformed transaction — never a RecursionError."""
    item = b"\xc0"
    for _ in range(depth):
        n = len(item)
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        item = (bytes([0xC0 + n]) if n < 56 else bytes([0xF7 + len(size)]) + size) + item
    with pytest.raises(TxDecodeError) as refused:
        decode_unsigned(prefix + item)
    assert refused.value.problem in {"too_deep", "bad_field_count", "bad_field"}
