"""The ERC-20 ABI the adapter speaks, through eth-abi and eth-utils.

Selectors and the Transfer topic are derived from the ABI at import, not
written as hex; calldata is encoded and decoded by eth-abi's strict codec,
which refuses what Solidity's decoder would revert on (an address word with
its upper 12 bytes set, short data).
"""

from __future__ import annotations

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_typing import ABIComponent, ABIEvent, ABIFunction
from eth_utils.abi import event_abi_to_log_topic, function_abi_to_4byte_selector

_ADDRESS_AMOUNT: list[ABIComponent] = [
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
]
TRANSFER_ABI: ABIFunction = {"type": "function", "name": "transfer", "inputs": _ADDRESS_AMOUNT}
TRANSFER_FROM_ABI: ABIFunction = {
    "type": "function",
    "name": "transferFrom",
    "inputs": [{"name": "from", "type": "address"}, *_ADDRESS_AMOUNT],
}
BALANCE_OF_ABI: ABIFunction = {
    "type": "function",
    "name": "balanceOf",
    "inputs": [{"name": "owner", "type": "address"}],
}
TRANSFER_EVENT_ABI: ABIEvent = {
    "type": "event",
    "name": "Transfer",
    "anonymous": False,
    "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False},
    ],
}


def _types(abi: ABIFunction) -> list[str]:
    return [str(i["type"]) for i in abi.get("inputs", [])]


TRANSFER_SELECTOR = bytes(function_abi_to_4byte_selector(TRANSFER_ABI))
TRANSFER_FROM_SELECTOR = bytes(function_abi_to_4byte_selector(TRANSFER_FROM_ABI))
BALANCE_OF_SELECTOR = bytes(function_abi_to_4byte_selector(BALANCE_OF_ABI))
# "0x" + 64 lowercase hex digits, the form nodes put in topics[0].
TRANSFER_TOPIC = "0x" + bytes(event_abi_to_log_topic(TRANSFER_EVENT_ABI)).hex()

_CALLS = {
    TRANSFER_SELECTOR: _types(TRANSFER_ABI),
    TRANSFER_FROM_SELECTOR: _types(TRANSFER_FROM_ABI),
}


def balance_of_calldata(owner: str) -> str:
    return "0x" + (BALANCE_OF_SELECTOR + encode(_types(BALANCE_OF_ABI), [owner])).hex()


def transfer_calldata(to: str, amount: int) -> str:
    return "0x" + (TRANSFER_SELECTOR + encode(_types(TRANSFER_ABI), [to, amount])).hex()


def decode_token_call(data: bytes) -> tuple[str | None, str, int] | None:
    """(from or None for the caller, to, amount) of transfer / transferFrom
    calldata; None for any other call or for calldata the token would reject.
    Trailing bytes after the arguments are ignored, as the ABI decoder does."""
    types = _CALLS.get(data[:4])
    if types is None:
        return None
    try:
        args = decode(types, data[4 : 4 + 32 * len(types)])
    except DecodingError:
        return None
    if len(types) == 2:
        return None, str(args[0]).lower(), int(args[1])
    return str(args[0]).lower(), str(args[1]).lower(), int(args[2])
