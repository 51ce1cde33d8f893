"""ERC-20 calldata: the core builds it, the adapter reads it, the signer decodes it — all
through eth-abi / eth-utils from the ABI, and all three agree. No process keeps the ABI as
hex constants (a selector typed by hand is how a wrong one would ship)."""

from __future__ import annotations

import re

from eth_abi.abi import decode
from hypothesis import given
from hypothesis import strategies as st

from adapters.evm import erc20 as adapter_erc20
from core.payouts import txbuilder
from localstack.paths import REPO
from signer.chains.evm_tx import EvmTx
from signer.chains.transfer import TRANSFER_SELECTOR, Transfer, transfer_calldata, transfer_of
from signer.secp256k1 import keccak256

TOKEN = "0x" + "cd" * 20
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
amounts = st.integers(min_value=0, max_value=2**256 - 1)


def _tx(data: bytes) -> EvmTx:
    return EvmTx("eip1559", 1, 0, 100_000, 0, 2, 1, bytes.fromhex(TOKEN[2:]), 0, data)


def test_selector_is_keccak_of_the_signature() -> None:
    expected = keccak256(b"transfer(address,uint256)")[:4]
    assert expected == TRANSFER_SELECTOR
    assert expected == txbuilder.ERC20_TRANSFER
    assert expected == adapter_erc20.TRANSFER_SELECTOR
    assert (
        "0x" + keccak256(b"Transfer(address,address,uint256)").hex() == adapter_erc20.TRANSFER_TOPIC
    )


@given(addresses, amounts)
def test_core_adapter_and_signer_agree_on_transfer_calldata(to: str, amount: int) -> None:
    built = txbuilder.erc20_transfer_data(to, amount)
    assert built == transfer_calldata(to, amount)
    assert "0x" + built.hex() == adapter_erc20.transfer_calldata(to, amount)
    assert transfer_of(_tx(built)) == Transfer(1, TOKEN, to, amount)
    assert adapter_erc20.decode_token_call(built) == (None, to, amount)
    assert decode(["address", "uint256"], built[4:]) == (to, amount)


def test_no_erc20_abi_hex_constants_in_the_processes() -> None:
    # The four-byte selectors and the Transfer topic of ERC-20, as hex text.
    constants = re.compile(r"a9059cbb|23b872dd|70a08231|095ea7b3|ddf252ad", re.IGNORECASE)
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for package in ("core", "signer", "adapters", "scripts/localstack")
        for path in sorted((REPO / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if constants.search(line)
    ]
    assert not found, found
