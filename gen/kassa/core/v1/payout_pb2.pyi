import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SweepKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWEEP_KIND_UNSPECIFIED: _ClassVar[SweepKind]
    SWEEP_KIND_SWEEP: _ClassVar[SweepKind]
    SWEEP_KIND_GAS_FUNDING: _ClassVar[SweepKind]

class PayoutKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_KIND_UNSPECIFIED: _ClassVar[PayoutKind]
    PAYOUT_KIND_PAYOUT: _ClassVar[PayoutKind]
    PAYOUT_KIND_REFUND: _ClassVar[PayoutKind]

class PayoutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_STATE_UNSPECIFIED: _ClassVar[PayoutState]
    PAYOUT_STATE_CREATED: _ClassVar[PayoutState]
    PAYOUT_STATE_SIGNING: _ClassVar[PayoutState]
    PAYOUT_STATE_WAITING_APPROVAL: _ClassVar[PayoutState]
    PAYOUT_STATE_SIGNED: _ClassVar[PayoutState]
    PAYOUT_STATE_BROADCAST: _ClassVar[PayoutState]
    PAYOUT_STATE_CONFIRMED: _ClassVar[PayoutState]
    PAYOUT_STATE_FAILED: _ClassVar[PayoutState]
    PAYOUT_STATE_CANCELLED: _ClassVar[PayoutState]

class PayoutTransactionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_TRANSACTION_STATUS_UNSPECIFIED: _ClassVar[PayoutTransactionStatus]
    PAYOUT_TRANSACTION_STATUS_CANDIDATE: _ClassVar[PayoutTransactionStatus]
    PAYOUT_TRANSACTION_STATUS_LANDED: _ClassVar[PayoutTransactionStatus]
    PAYOUT_TRANSACTION_STATUS_DROPPED: _ClassVar[PayoutTransactionStatus]
SWEEP_KIND_UNSPECIFIED: SweepKind
SWEEP_KIND_SWEEP: SweepKind
SWEEP_KIND_GAS_FUNDING: SweepKind
PAYOUT_KIND_UNSPECIFIED: PayoutKind
PAYOUT_KIND_PAYOUT: PayoutKind
PAYOUT_KIND_REFUND: PayoutKind
PAYOUT_STATE_UNSPECIFIED: PayoutState
PAYOUT_STATE_CREATED: PayoutState
PAYOUT_STATE_SIGNING: PayoutState
PAYOUT_STATE_WAITING_APPROVAL: PayoutState
PAYOUT_STATE_SIGNED: PayoutState
PAYOUT_STATE_BROADCAST: PayoutState
PAYOUT_STATE_CONFIRMED: PayoutState
PAYOUT_STATE_FAILED: PayoutState
PAYOUT_STATE_CANCELLED: PayoutState
PAYOUT_TRANSACTION_STATUS_UNSPECIFIED: PayoutTransactionStatus
PAYOUT_TRANSACTION_STATUS_CANDIDATE: PayoutTransactionStatus
PAYOUT_TRANSACTION_STATUS_LANDED: PayoutTransactionStatus
PAYOUT_TRANSACTION_STATUS_DROPPED: PayoutTransactionStatus

class Sweep(_message.Message):
    __slots__ = ("name", "kind", "chain", "asset", "source_address", "destination", "amount", "key_id", "invoice", "gas_funding", "state", "nonce", "tx_hash", "transactions", "network_fee", "max_fee_per_gas", "waiting_reason", "failure_reason", "create_time", "update_time", "confirm_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    GAS_FUNDING_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FEE_FIELD_NUMBER: _ClassVar[int]
    MAX_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: SweepKind
    chain: str
    asset: str
    source_address: str
    destination: str
    amount: str
    key_id: str
    invoice: str
    gas_funding: str
    state: PayoutState
    nonce: int
    tx_hash: str
    transactions: _containers.RepeatedCompositeFieldContainer[PayoutTransaction]
    network_fee: str
    max_fee_per_gas: str
    waiting_reason: str
    failure_reason: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    confirm_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[SweepKind, str]] = ..., chain: _Optional[str] = ..., asset: _Optional[str] = ..., source_address: _Optional[str] = ..., destination: _Optional[str] = ..., amount: _Optional[str] = ..., key_id: _Optional[str] = ..., invoice: _Optional[str] = ..., gas_funding: _Optional[str] = ..., state: _Optional[_Union[PayoutState, str]] = ..., nonce: _Optional[int] = ..., tx_hash: _Optional[str] = ..., transactions: _Optional[_Iterable[_Union[PayoutTransaction, _Mapping]]] = ..., network_fee: _Optional[str] = ..., max_fee_per_gas: _Optional[str] = ..., waiting_reason: _Optional[str] = ..., failure_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confirm_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunSweepsRequest(_message.Message):
    __slots__ = ("chain",)
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    def __init__(self, chain: _Optional[str] = ...) -> None: ...

class RunSweepsResponse(_message.Message):
    __slots__ = ("sweeps",)
    SWEEPS_FIELD_NUMBER: _ClassVar[int]
    sweeps: _containers.RepeatedCompositeFieldContainer[Sweep]
    def __init__(self, sweeps: _Optional[_Iterable[_Union[Sweep, _Mapping]]] = ...) -> None: ...

class GetSweepRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: Sweep
    def __init__(self, sweep: _Optional[_Union[Sweep, _Mapping]] = ...) -> None: ...

class ListSweepsRequest(_message.Message):
    __slots__ = ("chain", "page_size", "page_token")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    page_size: int
    page_token: str
    def __init__(self, chain: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSweepsResponse(_message.Message):
    __slots__ = ("sweeps", "next_page_token")
    SWEEPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sweeps: _containers.RepeatedCompositeFieldContainer[Sweep]
    next_page_token: str
    def __init__(self, sweeps: _Optional[_Iterable[_Union[Sweep, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PayoutTransaction(_message.Message):
    __slots__ = ("tx_hash", "max_fee_per_gas", "max_priority_fee_per_gas", "status", "create_time")
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    MAX_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    tx_hash: str
    max_fee_per_gas: str
    max_priority_fee_per_gas: str
    status: PayoutTransactionStatus
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, tx_hash: _Optional[str] = ..., max_fee_per_gas: _Optional[str] = ..., max_priority_fee_per_gas: _Optional[str] = ..., status: _Optional[_Union[PayoutTransactionStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SignRequestToApprove(_message.Message):
    __slots__ = ("body", "body_digest", "expire_time")
    BODY_FIELD_NUMBER: _ClassVar[int]
    BODY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    body_digest: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, body: _Optional[bytes] = ..., body_digest: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Payout(_message.Message):
    __slots__ = ("name", "kind", "invoice", "chain", "asset", "destination", "amount", "reference", "state", "nonce", "tx_hash", "transactions", "network_fee", "waiting_reason", "required_approvers", "approval_threshold", "approvals", "sign_request", "failure_reason", "create_time", "update_time", "confirm_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FEE_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_APPROVERS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    SIGN_REQUEST_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: PayoutKind
    invoice: str
    chain: str
    asset: str
    destination: str
    amount: str
    reference: str
    state: PayoutState
    nonce: int
    tx_hash: str
    transactions: _containers.RepeatedCompositeFieldContainer[PayoutTransaction]
    network_fee: str
    waiting_reason: str
    required_approvers: _containers.RepeatedScalarFieldContainer[str]
    approval_threshold: int
    approvals: _containers.RepeatedScalarFieldContainer[str]
    sign_request: SignRequestToApprove
    failure_reason: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    confirm_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[PayoutKind, str]] = ..., invoice: _Optional[str] = ..., chain: _Optional[str] = ..., asset: _Optional[str] = ..., destination: _Optional[str] = ..., amount: _Optional[str] = ..., reference: _Optional[str] = ..., state: _Optional[_Union[PayoutState, str]] = ..., nonce: _Optional[int] = ..., tx_hash: _Optional[str] = ..., transactions: _Optional[_Iterable[_Union[PayoutTransaction, _Mapping]]] = ..., network_fee: _Optional[str] = ..., waiting_reason: _Optional[str] = ..., required_approvers: _Optional[_Iterable[str]] = ..., approval_threshold: _Optional[int] = ..., approvals: _Optional[_Iterable[str]] = ..., sign_request: _Optional[_Union[SignRequestToApprove, _Mapping]] = ..., failure_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confirm_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreatePayoutRequest(_message.Message):
    __slots__ = ("parent", "payout", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    payout: Payout
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., payout: _Optional[_Union[Payout, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreatePayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class CreateRefundRequest(_message.Message):
    __slots__ = ("invoice", "destination", "amount", "reference", "request_id")
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    invoice: str
    destination: str
    amount: str
    reference: str
    request_id: str
    def __init__(self, invoice: _Optional[str] = ..., destination: _Optional[str] = ..., amount: _Optional[str] = ..., reference: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateRefundResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class GetPayoutRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetPayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class ListPayoutsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "states")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[PayoutState]
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[PayoutState, str]]] = ...) -> None: ...

class ListPayoutsResponse(_message.Message):
    __slots__ = ("payouts", "next_page_token")
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payouts: _containers.RepeatedCompositeFieldContainer[Payout]
    next_page_token: str
    def __init__(self, payouts: _Optional[_Iterable[_Union[Payout, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelPayoutRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelPayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class ApprovePayoutRequest(_message.Message):
    __slots__ = ("name", "approver_key_id", "signature", "body_digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    APPROVER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    BODY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    approver_key_id: str
    signature: bytes
    body_digest: str
    def __init__(self, name: _Optional[str] = ..., approver_key_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., body_digest: _Optional[str] = ...) -> None: ...

class ApprovePayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...
