"""The core's unsigned transactions decode, in the signer's own decoder, to
exactly the intent they were built from."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.payouts import txbuilder
from core.payouts.signer_client import body_digest, build_body
from signer.chains.evm_tx import decode_unsigned
from signer.chains.transfer import transfer_of
from signer.envelope.digest import body_digest as signer_digest

TOKEN = "0x" + "7e" * 20
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(
    addresses,
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(1, 10**12),
    st.integers(1, 10**12),
    st.booleans(),
)
def test_round_trip_through_the_signers_decoder(
    to: str, amount: int, nonce: int, tip: int, extra: int, token: bool
) -> None:
    asset = f"eip155:5/erc20:{TOKEN}" if token else "eip155:5/slip44:60"
    call = txbuilder.call_for(asset, to, amount)
    fees = txbuilder.Fees(tip + extra, tip)
    tx = decode_unsigned(txbuilder.eip1559(5, nonce, fees, call))
    assert (tx.kind, tx.chain_id, tx.nonce) == ("eip1559", 5, nonce)
    assert (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) == (tip + extra, tip)
    transfer = transfer_of(tx)
    assert transfer.recipient == to and transfer.amount == amount
    assert transfer.token == (TOKEN if token else None)


def test_fees_stay_within_caps() -> None:
    fees = txbuilder.capped_fees(10**12, 10**11, 5 * 10**11, 10**9)
    assert fees.max_fee_per_gas_wei == 5 * 10**11 and fees.max_priority_fee_per_gas_wei == 10**9
    low = txbuilder.capped_fees(7, 0, 10**12, 10**9)
    assert low.max_priority_fee_per_gas_wei == 1 and low.max_fee_per_gas_wei == 15


def test_body_digest_matches_the_signers() -> None:
    from datetime import UTC, datetime

    _, body = build_body(
        key_id="hot-1",
        chain="eip155:5",
        unsigned_transaction=b"\x02",
        destination="0x" + "11" * 20,
        asset="eip155:5/slip44:60",
        amount_base_units=1,
        purpose="PAYOUT",
        reference="merchants/m/payouts/p",
        issue_time=datetime.now(UTC),
        lifetime_s=30,
    )
    assert body_digest(body) == signer_digest(body)
