import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Purpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PURPOSE_UNSPECIFIED: _ClassVar[Purpose]
    PURPOSE_PAYOUT: _ClassVar[Purpose]
    PURPOSE_REFUND: _ClassVar[Purpose]
    PURPOSE_SWEEP: _ClassVar[Purpose]
    PURPOSE_GAS_FUNDING: _ClassVar[Purpose]
    PURPOSE_NONCE_FILL: _ClassVar[Purpose]

class KeyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_KIND_UNSPECIFIED: _ClassVar[KeyKind]
    KEY_KIND_HOT: _ClassVar[KeyKind]
    KEY_KIND_HD_ACCOUNT: _ClassVar[KeyKind]
PURPOSE_UNSPECIFIED: Purpose
PURPOSE_PAYOUT: Purpose
PURPOSE_REFUND: Purpose
PURPOSE_SWEEP: Purpose
PURPOSE_GAS_FUNDING: Purpose
PURPOSE_NONCE_FILL: Purpose
KEY_KIND_UNSPECIFIED: KeyKind
KEY_KIND_HOT: KeyKind
KEY_KIND_HD_ACCOUNT: KeyKind

class Intent(_message.Message):
    __slots__ = ("destination", "asset", "amount", "purpose", "reference", "destination_hd_index", "tx_id")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_HD_INDEX_FIELD_NUMBER: _ClassVar[int]
    TX_ID_FIELD_NUMBER: _ClassVar[int]
    destination: str
    asset: str
    amount: str
    purpose: Purpose
    reference: str
    destination_hd_index: int
    tx_id: str
    def __init__(self, destination: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[str] = ..., purpose: _Optional[_Union[Purpose, str]] = ..., reference: _Optional[str] = ..., destination_hd_index: _Optional[int] = ..., tx_id: _Optional[str] = ...) -> None: ...

class SignRequestBody(_message.Message):
    __slots__ = ("request_id", "key_id", "chain", "unsigned_transaction", "intent", "issue_time", "expire_time")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    UNSIGNED_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    key_id: str
    chain: str
    unsigned_transaction: bytes
    intent: Intent
    issue_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., key_id: _Optional[str] = ..., chain: _Optional[str] = ..., unsigned_transaction: _Optional[bytes] = ..., intent: _Optional[_Union[Intent, _Mapping]] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("approver_key_id", "signature")
    APPROVER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    approver_key_id: str
    signature: bytes
    def __init__(self, approver_key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SignedEnvelope(_message.Message):
    __slots__ = ("body", "caller_key_id", "caller_signature", "approvals")
    BODY_FIELD_NUMBER: _ClassVar[int]
    CALLER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    caller_key_id: str
    caller_signature: bytes
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    def __init__(self, body: _Optional[bytes] = ..., caller_key_id: _Optional[str] = ..., caller_signature: _Optional[bytes] = ..., approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: SignedEnvelope
    def __init__(self, envelope: _Optional[_Union[SignedEnvelope, _Mapping]] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("signed_transaction", "tx_hash", "signature", "recovery_id", "audit_record_hash")
    SIGNED_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIT_RECORD_HASH_FIELD_NUMBER: _ClassVar[int]
    signed_transaction: bytes
    tx_hash: str
    signature: bytes
    recovery_id: int
    audit_record_hash: str
    def __init__(self, signed_transaction: _Optional[bytes] = ..., tx_hash: _Optional[str] = ..., signature: _Optional[bytes] = ..., recovery_id: _Optional[int] = ..., audit_record_hash: _Optional[str] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ("key_id", "label", "kind", "public_key", "address", "xpub", "derivation_path", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    XPUB_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    label: str
    kind: KeyKind
    public_key: bytes
    address: str
    xpub: str
    derivation_path: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, key_id: _Optional[str] = ..., label: _Optional[str] = ..., kind: _Optional[_Union[KeyKind, str]] = ..., public_key: _Optional[bytes] = ..., address: _Optional[str] = ..., xpub: _Optional[str] = ..., derivation_path: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class GetPublicKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    def __init__(self, keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ...) -> None: ...
