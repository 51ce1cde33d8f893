"""Forwarder.sol, deployed to a local node: pays ETH onwards from inside a
contract call, as Safe wallets and exchange batchers do."""

from __future__ import annotations

from dataclasses import dataclass

from localstack.anvil import JsonRpc
from localstack.token import calldata as _calldata
from localstack.token import compile_contract


@dataclass(frozen=True)
class Forwarder:
    rpc: JsonRpc
    address: str

    def _send(self, sender: str, value: int, data: str) -> str:
        tx = {"from": sender, "to": self.address, "value": hex(value), "data": data}
        return str(self.rpc("eth_sendTransaction", tx))

    def forward(self, sender: str, to: str, value: int) -> str:
        """One internal call paying `value` wei to `to`."""
        return self._send(sender, value, _calldata("forward(address)", ["address"], [to]))

    def split(self, sender: str, payees: list[tuple[str, int]]) -> str:
        """One transaction, one internal call per payee."""
        data = _calldata(
            "split(address[],uint256[])",
            ["address[]", "uint256[]"],
            [[to for to, _ in payees], [amount for _, amount in payees]],
        )
        return self._send(sender, sum(amount for _, amount in payees), data)

    def forward_reverted(self, sender: str, to: str, value: int) -> str:
        """A successful transaction whose internal payment to `to` reverted."""
        return self._send(sender, value, _calldata("forwardReverted(address)", ["address"], [to]))


def deploy(rpc: JsonRpc, deployer: str) -> Forwarder:
    bytecode, _abi = compile_contract("Forwarder")
    tx_hash = rpc("eth_sendTransaction", {"from": deployer, "data": "0x" + bytecode})
    receipt = rpc.wait_receipt(str(tx_hash))
    if int(receipt["status"], 16) != 1:
        raise RuntimeError("Forwarder deployment reverted")
    return Forwarder(rpc, str(receipt["contractAddress"]).lower())
