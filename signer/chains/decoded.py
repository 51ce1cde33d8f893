"""One decoded transaction, whatever the chain: what it moves, what it may cost, what is signed.

The chain named in the request body picks the decoder (CAIP-2 namespace:
`eip155:` EVM, `tron:` TRON); everything after decoding — intent comparison,
policy, signing, the response — goes through this one shape, so a chain adds a
decoder here and nothing in the pipeline's order changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from signer.chains import evm_tx, tron_tx
from signer.chains import transfer as evm_transfer
from signer.chains.evm_tx import EvmTx
from signer.chains.transfer import Transfer
from signer.chains.tron_tx import TronTx
from signer.policy.decide import Fee
from signer.secp256k1 import keccak256


def is_tron(chain: str) -> bool:
    return chain.startswith("tron:")


@dataclass(frozen=True)
class Decoded:
    tx: EvmTx | TronTx
    transfer: Transfer
    fee: Fee

    @property
    def owner(self) -> str | None:
        """The account the transaction itself names as its sender (TRON), None for EVM (the
        sender is whoever signs)."""
        return self.tx.owner if isinstance(self.tx, TronTx) else None

    @property
    def data_bytes(self) -> int:
        """Bytes of calldata (EVM data, TRC-20 call data): 0 for a plain native transfer."""
        return len(self.tx.data)

    @property
    def tx_id(self) -> str | None:
        """TRON's txid (sha256 of raw_data, hex), known before signing; None for EVM."""
        return self.tx.txid().hex() if isinstance(self.tx, TronTx) else None

    def digest(self, unsigned: bytes) -> bytes:
        """What the key signs. `unsigned` is the body's bytes, which the decoder proved to be
        exactly this transaction's canonical encoding."""
        if isinstance(self.tx, TronTx):
            return self.tx.txid()
        return keccak256(unsigned)

    def signed(self, r: int, s: int, recovery_id: int) -> bytes:
        return self.tx.signed(r, s, recovery_id)

    def tx_hash(self, signed: bytes) -> str:
        if isinstance(self.tx, TronTx):
            return self.tx.txid().hex()
        return evm_tx.tx_hash(signed)

    def audit_fields(self) -> dict[str, str]:
        if isinstance(self.tx, TronTx):
            return {**self.tx.audit_fields(), **self.fee.summary()}
        return {"tx_type": self.tx.kind, "nonce": str(self.tx.nonce), **self.fee.summary()}


def decode(chain: str, unsigned: bytes) -> Decoded:
    """signer.chains.evm_tx.TxDecodeError (with a stable `problem`) for anything this signer
    does not sign."""
    if is_tron(chain):
        tron = tron_tx.decode_raw_data(unsigned)
        fee = Fee(fee_limit=tron.fee_limit, burn=tron.burn_bound())
        return Decoded(tron, tron_tx.transfer_of(tron), fee)
    # Any other chain is read as EVM; the intent then refuses a chain that is not eip155.
    evm = evm_tx.decode_unsigned(unsigned)
    return Decoded(evm, evm_transfer.transfer_of(evm), evm_fee(evm))


def evm_fee(tx: EvmTx) -> Fee:
    if tx.kind == "eip1559":
        return Fee(tx.gas, tx.max_fee_per_gas, tx.max_priority_fee_per_gas)
    return Fee(tx.gas, tx.gas_price, tx.gas_price)
