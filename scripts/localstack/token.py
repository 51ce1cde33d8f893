"""Compiles TestToken.sol with solcjs (offline) and deploys it to a node."""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eth_abi.abi import encode
from eth_utils.abi import event_signature_to_log_topic, function_signature_to_4byte_selector

from localstack.anvil import JsonRpc
from localstack.paths import SOLCJS

SOURCE = Path(__file__).parent / "contracts" / "TestToken.sol"
TRANSFER_TOPIC = "0x" + event_signature_to_log_topic("Transfer(address,address,uint256)").hex()


def calldata(signature: str, types: list[str], args: list[object]) -> str:
    """0x calldata of a call to `signature` (e.g. "transfer(address,uint256)")."""
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


@functools.cache
def compile_contract(name: str) -> tuple[str, list[dict[str, object]]]:
    """(creation bytecode hex, ABI) of contracts/<name>.sol's contract <name>."""
    source = SOURCE.parent / f"{name}.sol"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [str(SOLCJS), "--bin", "--abi", "--optimize", "-o", out, str(source)],
            check=True,
            capture_output=True,
            cwd=source.parent,
        )
        outs = Path(out)
        bin_path = next(outs.glob(f"*_{name}.bin"))
        abi_path = next(outs.glob(f"*_{name}.abi"))
        return bin_path.read_text().strip(), json.loads(abi_path.read_text())


def compiled() -> tuple[str, list[dict[str, object]]]:
    """(creation bytecode hex, ABI) of TestToken."""
    return compile_contract("TestToken")


@dataclass(frozen=True)
class Token:
    rpc: JsonRpc
    address: str
    decimals: int

    def mint(self, sender: str, to: str, amount: int) -> str:
        data = calldata("mint(address,uint256)", ["address", "uint256"], [to, amount])
        return str(
            self.rpc("eth_sendTransaction", {"from": sender, "to": self.address, "data": data})
        )

    def transfer(self, sender: str, to: str, amount: int, gas: int | None = None) -> str:
        """Sends transfer(to, amount) from an account the node holds the key of."""
        data = calldata("transfer(address,uint256)", ["address", "uint256"], [to, amount])
        tx: dict[str, str] = {"from": sender, "to": self.address, "data": data}
        if gas is not None:
            tx["gas"] = hex(gas)
        return str(self.rpc("eth_sendTransaction", tx))

    def balance_of(self, owner: str) -> int:
        data = calldata("balanceOf(address)", ["address"], [owner])
        return int(self.rpc("eth_call", {"to": self.address, "data": data}, "latest"), 16)


def deploy(
    rpc: JsonRpc, deployer: str, name: str = "Test USD", symbol: str = "TUSD", decimals: int = 6
) -> Token:
    bytecode, _abi = compiled()
    args = encode(["string", "string", "uint8"], [name, symbol, decimals]).hex()
    tx_hash = rpc("eth_sendTransaction", {"from": deployer, "data": "0x" + bytecode + args})
    receipt = rpc.wait_receipt(str(tx_hash))
    if int(receipt["status"], 16) != 1:
        raise RuntimeError("TestToken deployment reverted")
    return Token(rpc, str(receipt["contractAddress"]).lower(), decimals)
