"""The caller's stated intent, parsed, and compared with what the transaction really does.

What you see is what you sign: every field the intent states must equal the
decoded transaction, and a mismatch names the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from signer.chains import tron_address
from signer.chains.transfer import Transfer

_CHAIN = re.compile(r"eip155:([1-9][0-9]{0,18})")
_NATIVE = re.compile(r"eip155:([1-9][0-9]{0,18})/slip44:60")
_ERC20 = re.compile(r"eip155:([1-9][0-9]{0,18})/erc20:(0x[0-9a-f]{40})")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# TRON (CAIP-2 by the chain id java-tron's JSON-RPC answers; TRC-20 contracts in base58check).
_TRON_CHAIN = re.compile(r"tron:(0x[0-9a-f]{8})")
_TRON_NATIVE = re.compile(r"tron:(0x[0-9a-f]{8})/slip44:195")
_TRC20 = re.compile(r"tron:(0x[0-9a-f]{8})/trc20:(T[1-9A-HJ-NP-Za-km-z]{33})")
_TX_ID = re.compile(r"[0-9a-f]{64}")
_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")
PURPOSES = ("PAYOUT", "REFUND", "SWEEP", "GAS_FUNDING", "NONCE_FILL")
# The one purpose that moves nothing: its intent states amount "0" (policy then checks the
# rest of its shape, signer.policy.decide._purpose).
ZERO_AMOUNT_PURPOSES = frozenset({"NONCE_FILL"})


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
    chain: str  # CAIP-2, e.g. "eip155:1" or "tron:0x2b6653dc"
    chain_id: int | None  # the EIP-155 chain id; None on TRON (raw_data names no chain)
    asset: str  # CAIP-19
    token: str | None  # ERC-20: lowercase 0x; TRC-20: base58check; None for the native coin
    destination: str  # EVM: lowercase 0x address; TRON: base58check
    amount: int
    purpose: str
    reference: str
    tx_id: str | None = None  # TRON: sha256(raw_data) hex as the caller states it

    def summary(self) -> dict[str, str]:
        return {
            "chain": self.chain,
            "asset": self.asset,
            "destination": self.destination,
            "amount": str(self.amount),
            "purpose": self.purpose,
            "reference": self.reference,
            **({} if self.tx_id is None else {"tx_id": self.tx_id}),
        }


def parse_intent(
    chain: str,
    asset: str,
    destination: str,
    amount: str,
    purpose: str,
    reference: str,
    tx_id: str = "",
) -> Intent:
    if _TRON_CHAIN.fullmatch(chain) is not None:
        return _parse_tron(chain, asset, destination, amount, purpose, reference, tx_id)
    if tx_id:
        raise IntentInvalid("tx_id", "tx_id is for TRON; an EVM hash needs the signature")
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
    _check_common(amount, purpose)
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


def _check_common(amount: str, purpose: str) -> None:
    if purpose not in PURPOSES:
        raise IntentInvalid("purpose", f"purpose must be one of {', '.join(PURPOSES)}")
    if _AMOUNT.fullmatch(amount) is None:
        raise IntentInvalid("amount", "amount must be a decimal integer in base units")
    if int(amount) == 0 and purpose not in ZERO_AMOUNT_PURPOSES:
        raise IntentInvalid("amount", "amount must be a positive decimal integer in base units")


def _parse_tron(
    chain: str,
    asset: str,
    destination: str,
    amount: str,
    purpose: str,
    reference: str,
    tx_id: str,
) -> Intent:
    native = _TRON_NATIVE.fullmatch(asset)
    trc20 = _TRC20.fullmatch(asset)
    matched = native if native is not None else trc20
    if matched is None:
        raise IntentInvalid(
            "asset", f"asset {asset!r} is not tron:0x…/slip44:195 or tron:0x…/trc20:<T-address>"
        )
    if f"tron:{matched.group(1)}" != chain:
        raise IntentMismatch("asset_chain", chain, f"tron:{matched.group(1)}")
    if trc20 is not None and not tron_address.is_address(trc20.group(2)):
        raise IntentInvalid("asset", "the TRC-20 contract is not a TRON address")
    if not tron_address.is_address(destination):
        raise IntentInvalid("destination", "destination must be a base58check TRON address")
    _check_common(amount, purpose)
    if _TX_ID.fullmatch(tx_id) is None:
        raise IntentInvalid("tx_id", "a TRON intent states tx_id: sha256(raw_data), 64 hex")
    return Intent(
        chain=chain,
        chain_id=None,
        asset=asset,
        token=None if trc20 is None else trc20.group(2),
        destination=destination,
        amount=int(amount),
        purpose=purpose,
        reference=reference,
        tx_id=tx_id,
    )


def mismatch(intent: Intent, transfer: Transfer, tx_id: str | None = None) -> IntentMismatch | None:
    """The first field where the transaction differs from the intent, or None. tx_id: the
    id the signer computed from the bytes (TRON), compared with the one the intent states."""
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
    if tx_id != intent.tx_id:
        return IntentMismatch("tx_id", intent.tx_id or "", tx_id or "")
    return None
