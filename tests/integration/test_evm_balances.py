"""GetBalances and GetTransfers of kassa-evm against a real anvil: balances at
a past height (native and token), input refused by field, transactions with
their status and normalised transfers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from kassa.chain.v1 import adapter_pb2 as pb
from kassa.chain.v1 import adapter_pb2_grpc as pb_grpc
from localstack.anvil import Anvil
from localstack.token import Token
from tests.support.evm import core_sync_channel, start_adapter

NATIVE = "eip155:31337/slip44:60"


@pytest.fixture(scope="module")
def adapter_stub(
    anvil: Anvil, token: Token, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pb_grpc.ChainAdapterServiceStub]:
    process, port = start_adapter(tmp_path_factory.mktemp("evm"), [anvil.ws_url], [token.address])
    with core_sync_channel(port) as channel:
        yield pb_grpc.ChainAdapterServiceStub(channel)
    assert process.stop() == 0


def _asset(token: Token) -> str:
    return f"eip155:31337/erc20:{token.address.lower()}"


def _fresh() -> str:
    return "0x" + secrets.token_hex(20)


def _reason(exc: grpc.RpcError) -> tuple[str, list[str]]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def test_balances_at_a_past_height_native_and_token(
    anvil: Anvil, token: Token, adapter_stub: pb_grpc.ChainAdapterServiceStub
) -> None:
    owner, sender = anvil.accounts()[0], anvil.accounts()[2]
    a, b = _fresh(), _fresh()
    anvil.rpc.wait_receipt(token.mint(owner, a, 1_234))
    anvil.rpc.wait_receipt(
        anvil.rpc("eth_sendTransaction", {"from": sender, "to": b, "value": hex(5 * 10**15)})
    )
    before = anvil.head()
    anvil.rpc.wait_receipt(token.mint(owner, a, 1_000))
    anvil.rpc.wait_receipt(
        anvil.rpc("eth_sendTransaction", {"from": sender, "to": b, "value": hex(10**15)})
    )
    queries = [
        pb.BalanceQuery(address=a, asset=_asset(token)),
        pb.BalanceQuery(address=b.upper().replace("0X", "0x"), asset=NATIVE),
        pb.BalanceQuery(address=a, asset=NATIVE),
        pb.BalanceQuery(address=_fresh(), asset=_asset(token)),
    ]
    at_before = adapter_stub.GetBalances(pb.GetBalancesRequest(height=before, queries=queries))
    block = anvil.rpc("eth_getBlockByNumber", hex(before), False)
    assert at_before.block.height == before and at_before.block.hash == block["hash"].lower()
    assert list(at_before.balances) == ["1234", str(5 * 10**15), "0", "0"]
    now = adapter_stub.GetBalances(pb.GetBalancesRequest(height=anvil.head(), queries=queries))
    assert list(now.balances) == ["2234", str(6 * 10**15), "0", "0"]
    # Before the token existed, balanceOf has no contract to call: zero, not an error.
    genesis = adapter_stub.GetBalances(pb.GetBalancesRequest(height=0, queries=queries[:1]))
    assert list(genesis.balances) == ["0"]


def test_many_balances_in_batches(
    anvil: Anvil, adapter_stub: pb_grpc.ChainAdapterServiceStub
) -> None:
    addresses = [_fresh() for _ in range(2_345)]
    answer = adapter_stub.GetBalances(
        pb.GetBalancesRequest(
            height=anvil.head(),
            queries=[pb.BalanceQuery(address=x, asset=NATIVE) for x in addresses],
        )
    )
    assert len(answer.balances) == len(addresses) and set(answer.balances) == {"0"}


@pytest.mark.parametrize(
    ("queries", "reason", "field"),
    [
        ([("0x1234", NATIVE)], "INVALID_ADDRESS", "queries[0].address"),
        ([("0x" + "1" * 40 + "\n", NATIVE)], "INVALID_ADDRESS", "queries[0].address"),
        (
            [("0x" + "1" * 40, NATIVE), ("0x" + "2" * 40, "eip155:31337/erc20:0x" + "9" * 40)],
            "UNKNOWN_ASSET",
            "queries[1].asset",
        ),
        ([("0x" + "1" * 40, "eip155:1/slip44:60")], "UNKNOWN_ASSET", "queries[0].asset"),
        ([("0x" + "1" * 40, NATIVE)] * 10_001, "TOO_MANY_QUERIES", "queries"),
    ],
)
def test_bad_queries_are_refused_naming_the_field(
    anvil: Anvil,
    adapter_stub: pb_grpc.ChainAdapterServiceStub,
    queries: list[tuple[str, str]],
    reason: str,
    field: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        adapter_stub.GetBalances(
            pb.GetBalancesRequest(
                height=anvil.head(),
                queries=[pb.BalanceQuery(address=a, asset=s) for a, s in queries],
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert _reason(caught.value) == (reason, [field])


def test_a_height_not_mined_is_a_precondition_failure(
    anvil: Anvil, adapter_stub: pb_grpc.ChainAdapterServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        adapter_stub.GetBalances(pb.GetBalancesRequest(height=anvil.head() + 1000))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert _reason(caught.value)[0] == "HEIGHT_NOT_MINED"


def test_transfers_of_transactions(
    anvil: Anvil, token: Token, adapter_stub: pb_grpc.ChainAdapterServiceStub
) -> None:
    owner, sender = anvil.accounts()[0], anvil.accounts()[2]
    to = _fresh()
    token_tx = token.mint(owner, to, 777)
    native_tx = anvil.rpc("eth_sendTransaction", {"from": sender, "to": to, "value": hex(42)})
    token_receipt = anvil.rpc.wait_receipt(token_tx)
    anvil.rpc.wait_receipt(native_tx)
    # A transfer the token refuses (more than the sender holds) reverts.
    reverted_tx = token.transfer(_unfunded(anvil), to, 10**30, gas=100_000)
    reverted = anvil.rpc.wait_receipt(reverted_tx)
    assert reverted["status"] == "0x0"
    unknown = "0x" + secrets.token_hex(32)
    answer = adapter_stub.GetTransfers(
        pb.GetTransfersRequest(
            tx_hashes=[token_tx, native_tx.upper().replace("0X", "0x"), reverted_tx, unknown]
        )
    ).transactions
    assert [t.tx_hash for t in answer] == [
        token_tx.lower(),
        native_tx.lower(),
        reverted_tx.lower(),
        unknown,
    ]
    minted, native, failed, missing = answer
    assert minted.status == pb.TRANSACTION_STATUS_SUCCEEDED
    assert minted.block.height == int(token_receipt["blockNumber"], 16)
    (t,) = minted.transfers
    assert (t.index, t.asset, t.to_address, t.amount) == (1, _asset(token), to, "777")
    assert t.from_address == "0x" + "0" * 40
    assert int(minted.fee_paid) > 0
    (n,) = native.transfers
    assert (n.index, n.asset, n.from_address, n.to_address, n.amount) == (
        0,
        NATIVE,
        sender.lower(),
        to,
        "42",
    )
    assert failed.status == pb.TRANSACTION_STATUS_REVERTED and list(failed.transfers) == []
    assert missing.status == pb.TRANSACTION_STATUS_UNKNOWN and not missing.HasField("block")


def _unfunded(anvil: Anvil) -> str:
    """An unlocked account with gas and no tokens."""
    return anvil.accounts()[5]


def test_bad_hashes_are_refused(adapter_stub: pb_grpc.ChainAdapterServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        adapter_stub.GetTransfers(pb.GetTransfersRequest(tx_hashes=["0x12"]))
    assert _reason(caught.value) == ("INVALID_HASH", ["tx_hashes[0]"])
