"""What a compromised core can move, on a chain: an attacker with the core's caller key and
mTLS certificate drives the local stack's signer (the shipped policy, 24 h velocity windows)
directly and broadcasts everything it gets signed to anvil. Whatever it tries, the hot key
and the deposit addresses lose at most the velocity caps within the window (fees included),
and deposit funds go nowhere but the treasury."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import rlp
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from google.protobuf.timestamp_pb2 import Timestamp

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.fullstack import (
    APPROVAL_ABOVE_TOKEN,
    APPROVAL_ABOVE_WEI,
    DEPOSIT_VELOCITY_TOKEN,
    HOT_VELOCITY_TOKEN,
    HOT_VELOCITY_WEI,
    TX_CAP_TOKEN,
    LocalStack,
)
from signer.envelope.digest import body_digest
from signer.hd.bip32 import child_public, parse_extended_key, uncompressed
from signer.secp256k1 import address_of
from tests.support.grpc_errors import rich

MAX_FEE_WEI = 10 * 10**9
TIP_WEI = 10**9
GAS_NATIVE = 21_000
GAS_TOKEN = 100_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    """anvil, SoftHSM2 and the signer only: the attacker needs no core."""
    local = LocalStack(
        Path(tmp_path_factory.mktemp("bounds")), block_time_s=None, postgres=postgres
    )
    local.start_infrastructure()
    local.key_ceremony()
    local.start_signer()
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), codes


class Attacker:
    """The compromised core: signs envelopes with the core's key over the core's certificate."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.channel = stack.signer_channel()
        self.stub = signer_pb2_grpc.SignerServiceStub(self.channel)
        self.rpc = stack.anvil.rpc
        self.chain = stack.chain
        self.chain_id = stack.primary.chain_id
        self.token = stack.token.address.lower()
        self.token_asset = f"{self.chain}/erc20:{self.token}"
        self.native_asset = f"{self.chain}/slip44:60"
        self.address = "0x" + secrets.token_hex(20)
        self.refusals: list[str] = []
        self.last_metadata: dict[str, str] = {}

    def deposit(self, index: int) -> str:
        account = parse_extended_key(self.stack.account_xpub)
        return address_of(uncompressed(child_public(child_public(account, 0), index).public_key()))

    def send(
        self,
        key_id: str,
        source: str,
        purpose: int,
        asset: str,
        destination: str,
        amount: int,
        hd_index: int | None = None,
    ) -> str | None:
        """Signs and broadcasts; the tx hash, or None with the refusal reason recorded."""
        native = asset == self.native_asset
        nonce = int(self.rpc("eth_getTransactionCount", source, "pending"), 16)
        to = destination if native else self.token
        data = (
            b""
            if native
            else function_signature_to_4byte_selector("transfer(address,uint256)")
            + encode(["address", "uint256"], [destination, amount])
        )
        unsigned = b"\x02" + bytes(
            rlp.encode(
                [
                    self.chain_id,
                    nonce,
                    TIP_WEI,
                    MAX_FEE_WEI,
                    GAS_NATIVE if native else GAS_TOKEN,
                    bytes.fromhex(to[2:]),
                    amount if native else 0,
                    data,
                    [],
                ]
            )
        )
        issue, expire = Timestamp(), Timestamp()
        issue.FromNanoseconds(time.time_ns())
        expire.FromNanoseconds(time.time_ns() + 30 * 10**9)
        body = signer_pb2.SignRequestBody(
            request_id=str(uuid.uuid4()),
            key_id=key_id,
            chain=self.chain,
            unsigned_transaction=unsigned,
            intent=signer_pb2.Intent(
                destination=destination,
                asset=asset,
                amount=str(amount),
                purpose=purpose,  # type: ignore[arg-type]
                reference="attack",
                destination_hd_index=hd_index,
            ),
            issue_time=issue,
            expire_time=expire,
        ).SerializeToString()
        envelope = signer_pb2.SignedEnvelope(
            body=body,
            caller_key_id="core",
            caller_signature=self.stack.core_key.sign(body_digest(body)),
        )
        try:
            signed = self.stub.Sign(signer_pb2.SignRequest(envelope=envelope), timeout=20)
        except grpc.RpcError as error:
            refused = rich(error)
            self.refusals.append(refused.reason)
            self.last_metadata = refused.metadata
            return None
        tx_hash = str(self.rpc("eth_sendRawTransaction", "0x" + signed.signed_transaction.hex()))
        assert self.rpc.wait_receipt(tx_hash)["status"] == "0x1"
        return tx_hash

    def native(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)


@pytest.fixture(scope="module")
def attacker(stack: LocalStack) -> Iterator[Attacker]:
    a = Attacker(stack)
    yield a
    a.channel.close()


def test_the_hot_key_loses_at_most_its_velocity_caps(attacker: Attacker) -> None:
    a, hot = attacker, attacker.stack.hot_address
    payout, gas = signer_pb2.PURPOSE_PAYOUT, signer_pb2.PURPOSE_GAS_FUNDING
    native_before, token_before = a.native(hot), a.stack.token.balance_of(hot)
    # Above the thresholds needs approvals the core does not have.
    for asset, above in (
        (a.token_asset, APPROVAL_ABOVE_TOKEN),
        (a.native_asset, APPROVAL_ABOVE_WEI),
    ):
        assert a.send("hot-1", hot, payout, asset, a.address, above + 1) is None
        assert a.refusals[-1] == "APPROVALS_REQUIRED"

    # Tokens: payouts just under the approval threshold until the cap, then the remainder,
    # then one base unit more.
    while a.send("hot-1", hot, payout, a.token_asset, a.address, APPROVAL_ABOVE_TOKEN - 1):
        pass
    assert a.refusals[-1] == "OVER_VELOCITY_CAP"
    assert a.last_metadata["cap_asset"] == a.token_asset
    left = HOT_VELOCITY_TOKEN - (token_before - a.stack.token.balance_of(hot))
    assert a.send("hot-1", hot, payout, a.token_asset, a.address, left)
    assert a.send("hot-1", hot, payout, a.token_asset, a.address, 1) is None
    assert a.refusals[-1] == "OVER_VELOCITY_CAP"
    assert token_before - a.stack.token.balance_of(hot) == HOT_VELOCITY_TOKEN
    assert a.stack.token.balance_of(a.address) == HOT_VELOCITY_TOKEN

    # Native: the largest payouts that need no approval and gas fundings to deposit addresses
    # (they count too, as did the token transfers' fees), then what is left, then one wei.
    sent = 0
    while a.send("hot-1", hot, payout, a.native_asset, a.address, APPROVAL_ABOVE_WEI):
        sent += 1
        if sent % 3 == 0:
            index = 10 + sent
            assert a.send("hot-1", hot, gas, a.native_asset, a.deposit(index), 10**16, index)
    assert a.refusals[-1] == "OVER_VELOCITY_CAP"
    assert a.last_metadata["cap_asset"] == a.native_asset
    # What the signer counted (amounts plus the most each fee could cost), not what the
    # chain charged (less): the remainder the cap still allows.
    left = HOT_VELOCITY_WEI - int(a.last_metadata["used"]) - GAS_NATIVE * MAX_FEE_WEI
    assert left > 0 and a.send("hot-1", hot, payout, a.native_asset, a.address, left)
    assert a.send("hot-1", hot, payout, a.native_asset, a.address, 1) is None
    assert a.refusals[-1] == "OVER_VELOCITY_CAP"
    lost = native_before - a.native(hot)
    # (all of it but the part of each counted fee the chain did not charge)
    assert HOT_VELOCITY_WEI * 99 // 100 < lost <= HOT_VELOCITY_WEI
    # Nothing left for the token either: its transfers' fees are native.
    assert a.send("hot-1", hot, payout, a.token_asset, a.address, 1) is None


def test_deposit_addresses_sweep_only_to_the_treasury_within_one_shared_cap(
    attacker: Attacker,
) -> None:
    a, stack = attacker, attacker.stack
    sweep = signer_pb2.PURPOSE_SWEEP
    indexes = [1, 2, 3, 4]
    for index in indexes:
        deposit = a.deposit(index)
        stack.anvil.rpc("anvil_setBalance", deposit, hex(10**18))
        stack.anvil.rpc.wait_receipt(stack.token.transfer(stack.customer, deposit, TX_CAP_TOKEN))
    treasury_before = stack.token.balance_of(stack.treasury)
    for index in indexes:
        deposit = a.deposit(index)
        # Anywhere but the treasury, under any purpose, is refused.
        for purpose in (sweep, signer_pb2.PURPOSE_PAYOUT, signer_pb2.PURPOSE_REFUND):
            assert a.send(f"hd:{index}", deposit, purpose, a.token_asset, a.address, 1) is None
        assert a.refusals[-3:] == [
            "SWEEP_NOT_TO_TREASURY",
            "PURPOSE_KEY_MISMATCH",
            "PURPOSE_KEY_MISMATCH",
        ]
        a.send(f"hd:{index}", deposit, sweep, a.token_asset, stack.treasury.lower(), TX_CAP_TOKEN)
    # The deposit keys share one bucket: 4 x 100,000 offered, 250,000 is the cap.
    swept = stack.token.balance_of(stack.treasury) - treasury_before
    assert swept == (DEPOSIT_VELOCITY_TOKEN // TX_CAP_TOKEN) * TX_CAP_TOKEN
    rest = DEPOSIT_VELOCITY_TOKEN - swept
    assert a.send("hd:3", a.deposit(3), sweep, a.token_asset, stack.treasury.lower(), rest)
    assert a.send("hd:4", a.deposit(4), sweep, a.token_asset, stack.treasury.lower(), 1) is None
    assert a.refusals[-1] == "OVER_VELOCITY_CAP"
    assert stack.token.balance_of(stack.treasury) - treasury_before == DEPOSIT_VELOCITY_TOKEN
    assert stack.token.balance_of(a.address) in (0, HOT_VELOCITY_TOKEN)  # nothing from deposits
