"""TRON transactions the signer agrees to sign: raw_data decoding, the txid, the signed encoding.

A TRON transaction is protobuf: `Transaction { raw raw_data = 1; repeated bytes
signature = 2; }`. The signer receives raw_data's bytes, and signs
txid = sha256(raw_data) — it computes the txid itself, never takes it from the
caller. Two shapes exist here, each with exactly one contract:
- TransferContract (TRX): owner_address, to_address, amount;
- TriggerSmartContract calling a TRC-20 `transfer(address,uint256)` with
  call_value 0 and no TRC-10 token value.
Decoding is strict: no field this signer does not review (memo, scripts,
auths, a non-owner permission, provider), and the bytes must re-encode to
themselves, so two encodings of one transaction cannot smuggle a difference.

Why the messages are declared here and not as a .proto under protos/:
protos/ holds Kassa's own contract (protos/kassa/<service>/v1, buf lint
STANDARD), and java-tron's messages live in package `protocol` with names
such as `ContractName` and `Permission_id` that break those rules; renaming
them would make a file that is not TRON's. So the few messages and fields the
signer needs are declared with the protobuf library's descriptor API (field
numbers from java-tron's protocol/core/Tron.proto and contract/*.proto, the
same ones tronweb's generated code writes) and parsed by the protobuf
runtime — no hand-written wire reader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from signer.chains import tron_address
from signer.chains.evm_tx import TxDecodeError
from signer.chains.transfer import Transfer, decode_transfer_call

TRANSFER_CONTRACT = 1  # Transaction.Contract.ContractType.TransferContract
TRIGGER_SMART_CONTRACT = 31  # Transaction.Contract.ContractType.TriggerSmartContract
TYPE_URLS = {
    TRANSFER_CONTRACT: "type.googleapis.com/protocol.TransferContract",
    TRIGGER_SMART_CONTRACT: "type.googleapis.com/protocol.TriggerSmartContract",
}
INT64_MAX = 2**63 - 1
# What a TRON transaction can burn beside fee_limit, in sun. fee_limit bounds only the energy
# a contract call burns; bandwidth is burnt at the chain's transaction fee (1,000 sun per byte
# since proposal #83) when the sender's free bandwidth is spent, and a signed transfer of these
# shapes is under 400 bytes; a TRX transfer to an account that does not exist yet also burns
# the account-creation fee (1 TRX + 0.1 TRX in the system contract). The signer counts these
# bounds as the fee toward the native coin's caps, whatever the chain charges in the end.
BANDWIDTH_BURN_MAX_SUN = 400 * 1_000
ACCOUNT_CREATION_BURN_SUN = 1_100_000

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: Any, type_name: str = "", repeated: bool = False) -> Any:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    field = _F(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    return field


def _messages() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(
        name="kassa_signer_tron_subset.proto", package="protocol", syntax="proto3"
    )
    b, i64, i32, s, msg, enum = (
        _F.TYPE_BYTES,
        _F.TYPE_INT64,
        _F.TYPE_INT32,
        _F.TYPE_STRING,
        _F.TYPE_MESSAGE,
        _F.TYPE_INT32,  # ContractType is an enum on the wire: a varint; int32 keeps any value
    )
    proto.message_type.add(
        name="Any", field=[_field("type_url", 1, s), _field("value", 2, b)]
    )  # google.protobuf.Any's wire form
    proto.message_type.add(name="Authority", field=[_field("permission_name", 2, b)])
    proto.message_type.add(
        name="Contract",
        field=[
            _field("type", 1, enum),
            _field("parameter", 2, msg, ".protocol.Any"),
            _field("provider", 3, b),
            _field("ContractName", 4, b),
            _field("Permission_id", 5, i32),
        ],
    )
    proto.message_type.add(
        name="Raw",
        field=[
            _field("ref_block_bytes", 1, b),
            _field("ref_block_num", 3, i64),
            _field("ref_block_hash", 4, b),
            _field("expiration", 8, i64),
            _field("auths", 9, msg, ".protocol.Authority", repeated=True),
            _field("data", 10, b),
            _field("contract", 11, msg, ".protocol.Contract", repeated=True),
            _field("scripts", 12, b),
            _field("timestamp", 14, i64),
            _field("fee_limit", 18, i64),
        ],
    )
    proto.message_type.add(
        name="Transaction",
        field=[_field("raw_data", 1, b), _field("signature", 2, b, repeated=True)],
    )
    proto.message_type.add(
        name="TransferContract",
        field=[_field("owner_address", 1, b), _field("to_address", 2, b), _field("amount", 3, i64)],
    )
    proto.message_type.add(
        name="TriggerSmartContract",
        field=[
            _field("owner_address", 1, b),
            _field("contract_address", 2, b),
            _field("call_value", 3, i64),
            _field("data", 4, b),
            _field("call_token_value", 5, i64),
            _field("token_id", 6, i64),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"protocol.{m.name}"))
        for m in proto.message_type
    }


_M = _messages()


def message_class(name: str) -> Any:
    """One of the declared TRON messages (Raw, Contract, Any, Transaction, TransferContract,
    TriggerSmartContract, Authority): for builders and tests."""
    return _M[name]


ContractKind = Literal["trx", "trc20"]


@dataclass(frozen=True)
class TronTx:
    raw: bytes  # raw_data, exactly as received and signed
    kind: ContractKind
    owner: str  # base58check
    to: str  # TRX: the recipient; TRC-20: the token contract
    amount: int  # TRX: sun; TRC-20: 0 (the token amount is in the calldata)
    data: bytes  # TRC-20 calldata
    fee_limit: int  # sun
    expiration_ms: int
    ref_block_bytes: bytes
    ref_block_hash: bytes

    def txid(self) -> bytes:
        """What TRON signs and names the transaction by: sha256(raw_data)."""
        return hashlib.sha256(self.raw).digest()

    def signed(self, r: int, s: int, recovery_id: int) -> bytes:
        """The serialized Transaction for /wallet/broadcasthex: raw_data and one 65-byte
        signature r || s || v with v = 27 + recovery id, as tronweb and java-tron write it."""
        if recovery_id not in (0, 1):
            raise ValueError("recovery id must be 0 or 1")
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + recovery_id])
        tx = _M["Transaction"](raw_data=self.raw, signature=[signature])
        return bytes(tx.SerializeToString(deterministic=True))

    def burn_bound(self) -> int:
        """What the chain may burn beside fee_limit (sun), see BANDWIDTH_BURN_MAX_SUN."""
        creation = ACCOUNT_CREATION_BURN_SUN if self.kind == "trx" else 0
        return BANDWIDTH_BURN_MAX_SUN + creation

    def audit_fields(self) -> dict[str, str]:
        return {
            "tx_type": f"tron_{self.kind}",
            "owner": self.owner,
            "txid": self.txid().hex(),
            "expiration_ms": str(self.expiration_ms),
            "ref_block_bytes": self.ref_block_bytes.hex(),
            "ref_block_hash": self.ref_block_hash.hex(),
        }


def _parse(name: str, raw: bytes) -> Any:
    """A message of exactly these bytes: parsed, unknown fields refused, canonical."""
    try:
        message = _M[name].FromString(raw)
    except (DecodeError, RecursionError) as exc:
        raise TxDecodeError("bad_protobuf", f"{name} is not valid protobuf: {exc}") from None
    message.DiscardUnknownFields()
    if message.SerializeToString(deterministic=True) != raw:
        # Unknown fields, repeated scalars, fields out of order, defaults written out,
        # over-long varints: anything but the one canonical encoding.
        raise TxDecodeError("non_canonical", f"{name} does not re-encode to its own bytes")
    return message


def _address(raw: bytes, name: str) -> str:
    try:
        return tron_address.from_bytes(raw)
    except ValueError:
        raise TxDecodeError("bad_field", f"{name} must be a 21-byte 0x41 address") from None


def decode_raw_data(raw: bytes) -> TronTx:
    if not raw:
        raise TxDecodeError("empty", "the unsigned transaction is empty")
    data = _parse("Raw", raw)
    if len(data.contract) != 1:
        raise TxDecodeError("contract_count", f"exactly one contract, got {len(data.contract)}")
    for name in ("auths", "data", "scripts"):
        if len(getattr(data, name)):
            raise TxDecodeError("unreviewed_field", f"raw_data.{name} is not signed by Kassa")
    if len(data.ref_block_bytes) != 2 or len(data.ref_block_hash) != 8:
        raise TxDecodeError("bad_field", "ref_block_bytes is 2 bytes and ref_block_hash 8")
    if data.expiration <= 0 or data.fee_limit < 0:
        raise TxDecodeError("bad_field", "expiration must be positive and fee_limit not negative")
    contract = data.contract[0]
    if contract.provider or contract.ContractName:
        raise TxDecodeError("unreviewed_field", "contract provider / ContractName are not signed")
    if contract.Permission_id != 0:
        # Another permission is a multi-signature set-up this signer does not reason about.
        raise TxDecodeError("permission", "only the owner permission (0) is signed")
    if contract.type not in TYPE_URLS:
        raise TxDecodeError("unsupported_contract", f"contract type {contract.type} is not signed")
    if contract.parameter.type_url != TYPE_URLS[contract.type]:
        raise TxDecodeError(
            "type_url", f"parameter {contract.parameter.type_url!r} does not match the type"
        )
    common = {
        "raw": raw,
        "fee_limit": data.fee_limit,
        "expiration_ms": data.expiration,
        "ref_block_bytes": bytes(data.ref_block_bytes),
        "ref_block_hash": bytes(data.ref_block_hash),
    }
    if contract.type == TRANSFER_CONTRACT:
        trx = _parse("TransferContract", contract.parameter.value)
        if trx.amount <= 0:
            raise TxDecodeError("bad_field", "a TRX transfer moves a positive amount")
        if data.fee_limit != 0:
            # fee_limit bounds contract energy; on a TRX transfer it would be a number that
            # bounds nothing, so the signer does not let one be stated.
            raise TxDecodeError("bad_field", "a TRX transfer carries no fee_limit")
        return TronTx(
            kind="trx",
            owner=_address(trx.owner_address, "owner_address"),
            to=_address(trx.to_address, "to_address"),
            amount=trx.amount,
            data=b"",
            **common,
        )
    call = _parse("TriggerSmartContract", contract.parameter.value)
    if call.call_value or call.call_token_value or call.token_id:
        raise TxDecodeError("value_with_call", "a TRC-20 transfer carries no TRX or TRC-10 value")
    if data.fee_limit == 0:
        raise TxDecodeError("bad_field", "a TRC-20 transfer needs a fee_limit")
    decode_transfer_call(bytes(call.data))  # the only call signed; refuses anything else
    return TronTx(
        kind="trc20",
        owner=_address(call.owner_address, "owner_address"),
        to=_address(call.contract_address, "contract_address"),
        amount=0,
        data=bytes(call.data),
        **common,
    )


def transfer_of(tx: TronTx) -> Transfer:
    if tx.kind == "trx":
        return Transfer(None, None, tx.to, tx.amount)
    recipient, amount = decode_transfer_call(tx.data)
    return Transfer(None, tx.to, tron_address.from_bytes(b"\x41" + recipient), amount)


def build_raw_data(
    *,
    owner: str,
    to: str,
    amount: int,
    token: str | None,
    fee_limit: int,
    expiration_ms: int,
    timestamp_ms: int,
    ref_block_bytes: bytes,
    ref_block_hash: bytes,
    data: bytes = b"",
) -> bytes:
    """raw_data the way java-tron's /wallet/createtransaction and triggersmartcontract write it;
    for the tests and for a future TRON payout builder. token None: TRX, else TRC-20 `data`."""
    if token is None:
        kind = TRANSFER_CONTRACT
        value = _M["TransferContract"](
            owner_address=tron_address.to_bytes(owner),
            to_address=tron_address.to_bytes(to),
            amount=amount,
        )
    else:
        kind = TRIGGER_SMART_CONTRACT
        value = _M["TriggerSmartContract"](
            owner_address=tron_address.to_bytes(owner),
            contract_address=tron_address.to_bytes(token),
            data=data,
        )
    contract = _M["Contract"](
        type=kind,
        parameter=_M["Any"](
            type_url=TYPE_URLS[kind], value=value.SerializeToString(deterministic=True)
        ),
    )
    raw = _M["Raw"](
        ref_block_bytes=ref_block_bytes,
        ref_block_hash=ref_block_hash,
        expiration=expiration_ms,
        contract=[contract],
        timestamp=timestamp_ms,
        fee_limit=fee_limit,
    )
    return bytes(raw.SerializeToString(deterministic=True))
