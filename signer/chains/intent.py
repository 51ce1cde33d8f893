"""The caller's stated intent, parsed, and compared with what the transaction really does.

What you see is what you sign: every field the intent states must equal the
decoded transaction, and a mismatch names the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from signer.chains.transfer import Transfer

_CHAIN = re.compile(r"eip155:([1-9][0-9]{0,18})")
_NATIVE = re.compile(r"eip155:([1-9][0-9]{0,18})/slip44:60")
_ERC20 = re.compile(r"eip155:([1-9][0-9]{0,18})/erc20:(0x[0-9a-f]{40})")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")
PURPOSES = ("PAYOUT", "REFUND", "SWEEP", "GAS_FUNDING")


class IntentInvalid(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


class IntentMismatch(ValueError):
    def __init__(self, field: str, stated: str, actual: str) -> None:
        super().__init__(f"intent {field} is {stated!r} but the transaction says {actual!r}")
        self.field = field
        self.stated = stated
        self.actual = actual


@dataclass(frozen=True)
class Intent:
    chain: str  # CAIP-2, e.g. "eip155:1"
    chain_id: int
    asset: str  # CAIP-19
    token: str | None  # lowercase ERC-20 contract, None for the native coin
    destination: str  # lowercase 0x address
    amount: int
    purpose: str
    reference: str

    def summary(self) -> dict[str, str]:
        return {
            "chain": self.chain,
            "asset": self.asset,
            "destination": self.destination,
            "amount": str(self.amount),
            "purpose": self.purpose,
            "reference": self.reference,
        }


def parse_intent(
    chain: str, asset: str, destination: str, amount: str, purpose: str, reference: str
) -> Intent:
    chain_match = _CHAIN.fullmatch(chain)
    if chain_match is None:
        raise IntentInvalid("chain", f"chain {chain!r} is not a CAIP-2 eip155 chain id")
    native = _NATIVE.fullmatch(asset)
    erc20 = _ERC20.fullmatch(asset)
    matched = native if native is not None else erc20
    if matched is None:
        raise IntentInvalid(
            "asset",
            f"asset {asset!r} is not eip155:N/slip44:60 or eip155:N/erc20:<lowercase address>",
        )
    asset_chain = matched.group(1)
    if asset_chain != chain_match.group(1):
        raise IntentMismatch("asset_chain", chain, f"eip155:{asset_chain}")
    if _ADDRESS.fullmatch(destination) is None:
        raise IntentInvalid("destination", "destination must be a 0x address of 20 bytes")
    if _AMOUNT.fullmatch(amount) is None or int(amount) == 0:
        raise IntentInvalid("amount", "amount must be a positive decimal integer in base units")
    if purpose not in PURPOSES:
        raise IntentInvalid("purpose", f"purpose must be one of {', '.join(PURPOSES)}")
    return Intent(
        chain=chain,
        chain_id=int(chain_match.group(1)),
        asset=asset,
        token=None if erc20 is None else erc20.group(2),
        destination=destination.lower(),
        amount=int(amount),
        purpose=purpose,
        reference=reference,
    )


def mismatch(intent: Intent, transfer: Transfer) -> IntentMismatch | None:
    """The first field where the transaction differs from the intent, or None."""
    if transfer.chain_id != intent.chain_id:
        return IntentMismatch("chain", intent.chain, f"eip155:{transfer.chain_id}")
    if transfer.token != intent.token:
        return IntentMismatch(
            "asset", intent.asset, "native" if transfer.token is None else f"erc20:{transfer.token}"
        )
    if transfer.recipient != intent.destination:
        return IntentMismatch("destination", intent.destination, transfer.recipient)
    if transfer.amount != intent.amount:
        return IntentMismatch("amount", str(intent.amount), str(transfer.amount))
    return None
