"""Raw JSON-RPC block, log and receipt objects → normalised transfers.

Pure: no I/O, so every rule here is unit-tested with made-up and random
inputs. The node's JSON is untrusted text; anything that does not parse the
way an ERC-20 Transfer or a value-bearing transaction must is skipped rather
than guessed at.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.evm import erc20

TRANSFER_TOPIC = erc20.TRANSFER_TOPIC


@dataclass(frozen=True, slots=True)
class Transfer:
    tx_hash: str
    # 0 = the transaction's native value; k + 1 = its k-th tracked token log;
    # 2^30 + k = its k-th value-moving internal call frame (adapters.evm.traces).
    index: int
    asset: str
    from_address: str
    to_address: str
    amount: int
    success: bool
    log_index: int = 0


def native_asset(chain_id: int) -> str:
    return f"eip155:{chain_id}/slip44:60"


def token_asset(chain_id: int, address: str) -> str:
    return f"eip155:{chain_id}/erc20:{address.lower()}"


def quantity(value: Any) -> int:
    """A JSON-RPC QUANTITY ("0x1a") as an int; ValueError otherwise."""
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise ValueError(f"not a hex quantity: {value!r}")
    return int(value, 16)


def _topic_address(topic: Any) -> str | None:
    """The address in an indexed address topic, or None if it is not one."""
    if not isinstance(topic, str) or len(topic) != 66:
        return None
    body = topic[2:].lower()
    if body[:24] != "0" * 24:
        return None
    try:
        int(body, 16)
    except ValueError:
        return None
    return "0x" + body[24:]


def token_transfer_logs(
    logs: Iterable[Mapping[str, Any]], tokens: Collection[str]
) -> list[tuple[str, int, int, str, str, str, int]]:
    """(tx_hash, transaction_index, log_index, token, from, to, amount) for
    each well-formed ERC-20 Transfer log of a tracked token.

    ERC-721 also names its event Transfer but indexes the token id (4 topics,
    empty data): those, removed logs and malformed ones are skipped.

    The topic words and the amount word are read as hex here rather than
    through eth-abi: a block carries thousands of these logs, and eth-abi's
    decode of one uint256 word costs ~7.4 us against ~0.25 us for int(word,
    16) (measured on this machine) — 37 ms against 1.3 ms per 5,000-transfer
    block, on the detection path. The checks are the same: 32-byte words,
    an address word's upper 12 bytes zero.
    """
    out = []
    for log in logs:
        if log.get("removed"):
            continue
        address = str(log.get("address", "")).lower()
        if address not in tokens:
            continue
        topics = log.get("topics") or []
        if len(topics) != 3 or str(topics[0]).lower() != TRANSFER_TOPIC:
            continue
        sender, receiver = _topic_address(topics[1]), _topic_address(topics[2])
        data = log.get("data")
        if sender is None or receiver is None or not isinstance(data, str) or len(data) != 66:
            continue
        try:
            amount = int(data, 16)
            tx_index = quantity(log.get("transactionIndex"))
            log_index = quantity(log.get("logIndex"))
        except ValueError:
            continue
        out.append(
            (
                str(log.get("transactionHash", "")).lower(),
                tx_index,
                log_index,
                address,
                sender,
                receiver,
                amount,
            )
        )
    return out


def value_bearing(transactions: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The block's full transaction objects that move native value."""
    found = []
    for tx in transactions:
        if not isinstance(tx, Mapping):
            continue
        try:
            if quantity(tx.get("value")) > 0:
                found.append(tx)
        except ValueError:
            continue
    return found


def receipt_succeeded(receipt: Mapping[str, Any] | None) -> bool:
    """status 0x1 → True; 0x0 → False. Pre-Byzantium receipts carry no
    status (and every supported chain is past it): treated as success."""
    if receipt is None or receipt.get("status") is None:
        return True
    return quantity(receipt["status"]) == 1


def block_transfers(
    chain_id: int,
    transactions: Iterable[Any],
    logs: Iterable[Mapping[str, Any]],
    receipts: Mapping[str, Mapping[str, Any]],
    tokens: Collection[str],
    internal: Iterable[tuple[int, Transfer]] = (),
) -> list[Transfer]:
    """All of one block's transfers, in block order: by transaction
    position, then index (native value first, then token logs by log index,
    then internal value transfers from call traces).

    receipts maps lowercase tx hash → receipt for the value-bearing
    transactions; a native transfer's success is its receipt's status.
    internal holds (transaction position, transfer) from adapters.evm.traces.
    """
    native = native_asset(chain_id)
    keyed: list[tuple[int, int, Transfer]] = []
    for tx in value_bearing(transactions):
        tx_hash = str(tx.get("hash", "")).lower()
        receiver = tx.get("to")
        receipt = receipts.get(tx_hash)
        if receiver is None and receipt is not None:
            receiver = receipt.get("contractAddress")  # value sent to a contract creation
        if receiver is None:
            continue
        keyed.append(
            (
                quantity(tx.get("transactionIndex")),
                0,
                Transfer(
                    tx_hash=tx_hash,
                    index=0,
                    asset=native,
                    from_address=str(tx.get("from", "")).lower(),
                    to_address=str(receiver).lower(),
                    amount=quantity(tx["value"]),
                    success=receipt_succeeded(receipt),
                ),
            )
        )
    per_tx: dict[str, int] = {}
    for tx_hash, tx_index, log_index, token, sender, receiver, amount in sorted(
        token_transfer_logs(logs, tokens), key=lambda item: item[2]
    ):
        position = per_tx.get(tx_hash, 0) + 1
        per_tx[tx_hash] = position
        # Reverted transactions emit no logs, so every logged transfer succeeded.
        keyed.append(
            (
                tx_index,
                position,
                Transfer(
                    tx_hash=tx_hash,
                    index=position,
                    asset=token_asset(chain_id, token),
                    from_address=sender,
                    to_address=receiver,
                    amount=amount,
                    success=True,
                    log_index=log_index,
                ),
            )
        )
    keyed.extend((position, t.index, t) for position, t in internal)
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [transfer for _, _, transfer in keyed]


# ERC-20 selectors (hex, no 0x), derived from the ABI in adapters.evm.erc20.
TRANSFER_SELECTOR = erc20.TRANSFER_SELECTOR.hex()
TRANSFER_FROM_SELECTOR = erc20.TRANSFER_FROM_SELECTOR.hex()


def token_call(input_data: Any) -> tuple[str | None, str, int] | None:
    """(from or None for the caller, to, amount) of an ERC-20 transfer or
    transferFrom call's calldata; None for anything else.

    Trailing bytes after the arguments are allowed (the ABI decoder ignores
    them and some wallets append tags); short or non-hex calldata is not.
    """
    if not isinstance(input_data, str) or not input_data.startswith(("0x", "0X")):
        return None
    try:
        data = bytes.fromhex(input_data[2:])
    except ValueError:
        return None
    return erc20.decode_token_call(data)


def pending_transfers(
    chain_id: int, tx: Mapping[str, Any], tokens: Collection[str]
) -> list[Transfer]:
    """The transfers a mempool transaction would make if it succeeds.

    Index rules match `block_transfers`, so the mined transfer replaces the
    sighting under the same (tx_hash, index): native value → 0; a decoded
    token call → 1, which is what the mined Transfer log gets when it is the
    transaction's first tracked-token Transfer log. A token emitting another
    tracked Transfer log first (fee-on-transfer, hooks) breaks that: the
    consumer must drop sightings of a mined transaction that the block does
    not repeat. Contract creations and zero amounts are skipped. `success` is
    False: a pending transaction has not executed.
    """
    tx_hash = tx.get("hash")
    sender = tx.get("from")
    receiver = tx.get("to")
    if not isinstance(tx_hash, str) or not isinstance(sender, str) or not isinstance(receiver, str):
        return []
    tx_hash, sender, receiver = tx_hash.lower(), sender.lower(), receiver.lower()
    out: list[Transfer] = []
    try:
        value = quantity(tx.get("value"))
    except ValueError:
        return []
    if value > 0:
        out.append(
            Transfer(
                tx_hash=tx_hash,
                index=0,
                asset=native_asset(chain_id),
                from_address=sender,
                to_address=receiver,
                amount=value,
                success=False,
            )
        )
    if receiver in tokens:
        call = token_call(tx.get("input", tx.get("data")))
        if call is not None:
            holder, payee, amount = call
            if amount > 0:
                out.append(
                    Transfer(
                        tx_hash=tx_hash,
                        index=1,
                        asset=token_asset(chain_id, receiver),
                        from_address=holder or sender,
                        to_address=payee,
                        amount=amount,
                        success=False,
                    )
                )
    return out
