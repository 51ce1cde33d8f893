"""core/domain/assets.py, the one parser of an asset id: a table of examples
and properties over every EVM chain id and token contract."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain import assets

TOKEN = "eip155:1/erc20:0x00000000000000000000000000000000000000aa"


@pytest.mark.parametrize(
    ("asset_id", "chain", "native", "contract"),
    [
        ("eip155:1/slip44:60", "eip155:1", True, None),
        ("eip155:31337/slip44:60", "eip155:31337", True, None),
        (TOKEN, "eip155:1", False, "0x00000000000000000000000000000000000000aa"),
    ],
)
def test_an_asset_id_parses_into_its_parts(
    asset_id: str, chain: str, native: bool, contract: str | None
) -> None:
    assert assets.chain_of(asset_id) == chain
    assert assets.is_native(asset_id) is native
    assert assets.contract_of(asset_id) == contract


@pytest.mark.parametrize(
    ("chain", "number"), [("eip155:1", 1), ("eip155:137", 137), ("eip155:31337", 31337)]
)
def test_the_eip155_chain_number(chain: str, number: int) -> None:
    assert assets.chain_number(chain) == number


@pytest.mark.parametrize(
    "bad",
    [
        "eip155:1/slip44:60\n",
        "eip155:01/slip44:60",
        "eip155:1/erc20:0xAA00000000000000000000000000000000000000",
        "eip155:1/erc20:0xaa",
        "bip122:000000000019d6689c085ae165831e93/slip44:0",
        "eip155:1",
    ],
)
def test_a_malformed_asset_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        assets.chain_of(bad)


chain_ids = st.integers(min_value=1, max_value=10**15).map(lambda n: f"eip155:{n}")
contracts = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(chain_ids)
def test_a_chains_native_asset_is_native_and_on_that_chain(chain: str) -> None:
    native = assets.native(chain)
    assert assets.is_native(native) and assets.contract_of(native) is None
    assert assets.chain_of(native) == chain
    assert assets.native(assets.chain_of(native)) == native
    assert f"eip155:{assets.chain_number(chain)}" == chain


@given(chain_ids, contracts)
def test_a_token_is_not_native_and_names_its_contract(chain: str, contract: str) -> None:
    token = f"{chain}/erc20:{contract}"
    assert not assets.is_native(token)
    assert assets.contract_of(token) == contract
    assert assets.chain_of(token) == chain
