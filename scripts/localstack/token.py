"""Compiles TestToken.sol with solcjs (offline) and deploys it to a node."""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from localstack.anvil import JsonRpc
from localstack.paths import SOLCJS

SOURCE = Path(__file__).parent / "contracts" / "TestToken.sol"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


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


def _word(value: int) -> str:
    return f"{value:064x}"


def _encode_string(value: str) -> str:
    raw = value.encode()
    padded = raw.hex().ljust(((len(raw) + 31) // 32) * 64, "0")
    return _word(len(raw)) + padded


def _address_word(address: str) -> str:
    return address.lower().removeprefix("0x").rjust(64, "0")


@dataclass(frozen=True)
class Token:
    rpc: JsonRpc
    address: str
    decimals: int

    def mint(self, sender: str, to: str, amount: int) -> str:
        data = "0x40c10f19" + _address_word(to) + _word(amount)
        return str(
            self.rpc("eth_sendTransaction", {"from": sender, "to": self.address, "data": data})
        )

    def transfer(self, sender: str, to: str, amount: int, gas: int | None = None) -> str:
        """Sends transfer(to, amount) from an account the node holds the key of."""
        data = "0xa9059cbb" + _address_word(to) + _word(amount)
        tx: dict[str, str] = {"from": sender, "to": self.address, "data": data}
        if gas is not None:
            tx["gas"] = hex(gas)
        return str(self.rpc("eth_sendTransaction", tx))

    def balance_of(self, owner: str) -> int:
        data = "0x70a08231" + _address_word(owner)
        return int(self.rpc("eth_call", {"to": self.address, "data": data}, "latest"), 16)


def deploy(
    rpc: JsonRpc, deployer: str, name: str = "Test USD", symbol: str = "TUSD", decimals: int = 6
) -> Token:
    bytecode, _abi = compiled()
    # Constructor args: (string, string, uint8) — two dynamic offsets, then tails.
    head_len = 3 * 32
    name_tail = _encode_string(name)
    symbol_offset = head_len + len(name_tail) // 2
    args = (
        _word(head_len)
        + _word(symbol_offset)
        + _word(decimals)
        + name_tail
        + _encode_string(symbol)
    )
    tx_hash = rpc("eth_sendTransaction", {"from": deployer, "data": "0x" + bytecode + args})
    receipt = rpc.wait_receipt(str(tx_hash))
    if int(receipt["status"], 16) != 1:
        raise RuntimeError("TestToken deployment reverted")
    return Token(rpc, str(receipt["contractAddress"]).lower(), decimals)
