import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ItemKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_KIND_UNSPECIFIED: _ClassVar[ItemKind]
    ITEM_KIND_INVOICE_UNDERPAID: _ClassVar[ItemKind]
    ITEM_KIND_INVOICE_OVERPAID: _ClassVar[ItemKind]
    ITEM_KIND_INVOICE_PAID_LATE: _ClassVar[ItemKind]
    ITEM_KIND_INVOICE_DUPLICATE: _ClassVar[ItemKind]
    ITEM_KIND_INVOICE_WRONG_ASSET: _ClassVar[ItemKind]
    ITEM_KIND_INVOICE_WRONG_NETWORK: _ClassVar[ItemKind]
    ITEM_KIND_PAYOUT_WAITING_APPROVAL: _ClassVar[ItemKind]
    ITEM_KIND_PAYOUT_STUCK: _ClassVar[ItemKind]
    ITEM_KIND_WEBHOOK_ENDPOINT_FAILING: _ClassVar[ItemKind]
    ITEM_KIND_RECONCILIATION_MISMATCH: _ClassVar[ItemKind]

class ActionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_TYPE_UNSPECIFIED: _ClassVar[ActionType]
    ACTION_TYPE_ACCEPT_AS_PAID: _ClassVar[ActionType]
    ACTION_TYPE_REQUEST_TOP_UP: _ClassVar[ActionType]
    ACTION_TYPE_REFUND_EXCESS: _ClassVar[ActionType]
    ACTION_TYPE_REFUND_WHOLE: _ClassVar[ActionType]
    ACTION_TYPE_MARK_FOR_REVIEW: _ClassVar[ActionType]
    ACTION_TYPE_ATTACH_TRANSACTION: _ClassVar[ActionType]
    ACTION_TYPE_REDELIVER_WEBHOOKS: _ClassVar[ActionType]
    ACTION_TYPE_ACKNOWLEDGE: _ClassVar[ActionType]
    ACTION_TYPE_REBASELINE: _ClassVar[ActionType]

class SupportActionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPPORT_ACTION_STATE_UNSPECIFIED: _ClassVar[SupportActionState]
    SUPPORT_ACTION_STATE_DONE: _ClassVar[SupportActionState]
    SUPPORT_ACTION_STATE_PENDING_APPROVAL: _ClassVar[SupportActionState]
    SUPPORT_ACTION_STATE_REJECTED: _ClassVar[SupportActionState]
    SUPPORT_ACTION_STATE_WITHDRAWN: _ClassVar[SupportActionState]

class RefundScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFUND_SCOPE_UNSPECIFIED: _ClassVar[RefundScope]
    REFUND_SCOPE_EXCESS: _ClassVar[RefundScope]
    REFUND_SCOPE_WHOLE: _ClassVar[RefundScope]
ITEM_KIND_UNSPECIFIED: ItemKind
ITEM_KIND_INVOICE_UNDERPAID: ItemKind
ITEM_KIND_INVOICE_OVERPAID: ItemKind
ITEM_KIND_INVOICE_PAID_LATE: ItemKind
ITEM_KIND_INVOICE_DUPLICATE: ItemKind
ITEM_KIND_INVOICE_WRONG_ASSET: ItemKind
ITEM_KIND_INVOICE_WRONG_NETWORK: ItemKind
ITEM_KIND_PAYOUT_WAITING_APPROVAL: ItemKind
ITEM_KIND_PAYOUT_STUCK: ItemKind
ITEM_KIND_WEBHOOK_ENDPOINT_FAILING: ItemKind
ITEM_KIND_RECONCILIATION_MISMATCH: ItemKind
ACTION_TYPE_UNSPECIFIED: ActionType
ACTION_TYPE_ACCEPT_AS_PAID: ActionType
ACTION_TYPE_REQUEST_TOP_UP: ActionType
ACTION_TYPE_REFUND_EXCESS: ActionType
ACTION_TYPE_REFUND_WHOLE: ActionType
ACTION_TYPE_MARK_FOR_REVIEW: ActionType
ACTION_TYPE_ATTACH_TRANSACTION: ActionType
ACTION_TYPE_REDELIVER_WEBHOOKS: ActionType
ACTION_TYPE_ACKNOWLEDGE: ActionType
ACTION_TYPE_REBASELINE: ActionType
SUPPORT_ACTION_STATE_UNSPECIFIED: SupportActionState
SUPPORT_ACTION_STATE_DONE: SupportActionState
SUPPORT_ACTION_STATE_PENDING_APPROVAL: SupportActionState
SUPPORT_ACTION_STATE_REJECTED: SupportActionState
SUPPORT_ACTION_STATE_WITHDRAWN: SupportActionState
REFUND_SCOPE_UNSPECIFIED: RefundScope
REFUND_SCOPE_EXCESS: RefundScope
REFUND_SCOPE_WHOLE: RefundScope

class Evidence(_message.Message):
    __slots__ = ("type", "ref", "detail", "time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    ref: str
    detail: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., ref: _Optional[str] = ..., detail: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SupportItem(_message.Message):
    __slots__ = ("kind", "subject", "since_time", "age_seconds", "amount", "asset", "detail", "evidence", "actions", "review_actor", "review_reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SINCE_TIME_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ACTOR_FIELD_NUMBER: _ClassVar[int]
    REVIEW_REASON_FIELD_NUMBER: _ClassVar[int]
    kind: ItemKind
    subject: str
    since_time: _timestamp_pb2.Timestamp
    age_seconds: int
    amount: str
    asset: str
    detail: str
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    actions: _containers.RepeatedScalarFieldContainer[ActionType]
    review_actor: str
    review_reason: str
    def __init__(self, kind: _Optional[_Union[ItemKind, str]] = ..., subject: _Optional[str] = ..., since_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., age_seconds: _Optional[int] = ..., amount: _Optional[str] = ..., asset: _Optional[str] = ..., detail: _Optional[str] = ..., evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ..., actions: _Optional[_Iterable[_Union[ActionType, str]]] = ..., review_actor: _Optional[str] = ..., review_reason: _Optional[str] = ...) -> None: ...

class SupportAction(_message.Message):
    __slots__ = ("name", "action", "kind", "subject", "reason", "actor", "state", "result", "destination", "amount", "tx_hash", "approver", "approve_time", "create_time", "decider", "decide_reason", "decide_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    APPROVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DECIDER_FIELD_NUMBER: _ClassVar[int]
    DECIDE_REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: ActionType
    kind: ItemKind
    subject: str
    reason: str
    actor: str
    state: SupportActionState
    result: str
    destination: str
    amount: str
    tx_hash: str
    approver: str
    approve_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    decider: str
    decide_reason: str
    decide_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[ActionType, str]] = ..., kind: _Optional[_Union[ItemKind, str]] = ..., subject: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., state: _Optional[_Union[SupportActionState, str]] = ..., result: _Optional[str] = ..., destination: _Optional[str] = ..., amount: _Optional[str] = ..., tx_hash: _Optional[str] = ..., approver: _Optional[str] = ..., approve_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decider: _Optional[str] = ..., decide_reason: _Optional[str] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSupportItemsRequest(_message.Message):
    __slots__ = ("kinds", "page_size", "page_token")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[ItemKind]
    page_size: int
    page_token: str
    def __init__(self, kinds: _Optional[_Iterable[_Union[ItemKind, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSupportItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SupportItem]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[SupportItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcceptAsPaidRequest(_message.Message):
    __slots__ = ("subject", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AcceptAsPaidResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class RequestTopUpRequest(_message.Message):
    __slots__ = ("subject", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RequestTopUpResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class RefundInvoiceRequest(_message.Message):
    __slots__ = ("subject", "kind", "scope", "destination", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    kind: ItemKind
    scope: RefundScope
    destination: str
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., kind: _Optional[_Union[ItemKind, str]] = ..., scope: _Optional[_Union[RefundScope, str]] = ..., destination: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RefundInvoiceResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class MarkForReviewRequest(_message.Message):
    __slots__ = ("subject", "kind", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    kind: ItemKind
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., kind: _Optional[_Union[ItemKind, str]] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class MarkForReviewResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class AttachTransactionRequest(_message.Message):
    __slots__ = ("subject", "kind", "tx_hash", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    kind: ItemKind
    tx_hash: str
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., kind: _Optional[_Union[ItemKind, str]] = ..., tx_hash: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AttachTransactionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class RedeliverFailedWebhooksRequest(_message.Message):
    __slots__ = ("subject", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RedeliverFailedWebhooksResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class RebaselineRequest(_message.Message):
    __slots__ = ("subject", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RebaselineResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class AcknowledgeRequest(_message.Message):
    __slots__ = ("subject", "kind", "reason", "request_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    kind: ItemKind
    reason: str
    request_id: str
    def __init__(self, subject: _Optional[str] = ..., kind: _Optional[_Union[ItemKind, str]] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AcknowledgeResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class ApproveSupportActionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ApproveSupportActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class DeclineSupportActionRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeclineSupportActionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: SupportAction
    def __init__(self, action: _Optional[_Union[SupportAction, _Mapping]] = ...) -> None: ...

class ListSupportActionsRequest(_message.Message):
    __slots__ = ("subject", "page_size", "page_token")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subject: str
    page_size: int
    page_token: str
    def __init__(self, subject: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSupportActionsResponse(_message.Message):
    __slots__ = ("actions", "next_page_token")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[SupportAction]
    next_page_token: str
    def __init__(self, actions: _Optional[_Iterable[_Union[SupportAction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
