import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DifferenceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIFFERENCE_KIND_UNSPECIFIED: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_BALANCE: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_TRANSACTION: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_UNATTRIBUTED: _ClassVar[DifferenceKind]
DIFFERENCE_KIND_UNSPECIFIED: DifferenceKind
DIFFERENCE_KIND_BALANCE: DifferenceKind
DIFFERENCE_KIND_TRANSACTION: DifferenceKind
DIFFERENCE_KIND_UNATTRIBUTED: DifferenceKind

class Explanation(_message.Message):
    __slots__ = ("kind", "resource", "amount")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    resource: str
    amount: str
    def __init__(self, kind: _Optional[str] = ..., resource: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class Difference(_message.Message):
    __slots__ = ("kind", "chain", "asset", "location", "address", "ledger_amount", "chain_amount", "unexplained_amount", "explanations", "tx_hash", "resource", "detail", "unexplained")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CHAIN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UNEXPLAINED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    UNEXPLAINED_FIELD_NUMBER: _ClassVar[int]
    kind: DifferenceKind
    chain: str
    asset: str
    location: str
    address: str
    ledger_amount: str
    chain_amount: str
    unexplained_amount: str
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    tx_hash: str
    resource: str
    detail: str
    unexplained: bool
    def __init__(self, kind: _Optional[_Union[DifferenceKind, str]] = ..., chain: _Optional[str] = ..., asset: _Optional[str] = ..., location: _Optional[str] = ..., address: _Optional[str] = ..., ledger_amount: _Optional[str] = ..., chain_amount: _Optional[str] = ..., unexplained_amount: _Optional[str] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ..., tx_hash: _Optional[str] = ..., resource: _Optional[str] = ..., detail: _Optional[str] = ..., unexplained: _Optional[bool] = ...) -> None: ...

class Reconciliation(_message.Message):
    __slots__ = ("name", "chain", "height", "block_hash", "locations_compared", "balances_compared", "transactions_compared", "differences", "unexplained_count", "start_time", "finish_time", "trigger", "incremental", "since")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_COMPARED_FIELD_NUMBER: _ClassVar[int]
    BALANCES_COMPARED_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_COMPARED_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    UNEXPLAINED_COUNT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    chain: str
    height: int
    block_hash: str
    locations_compared: int
    balances_compared: int
    transactions_compared: int
    differences: _containers.RepeatedCompositeFieldContainer[Difference]
    unexplained_count: int
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    trigger: str
    incremental: bool
    since: str
    def __init__(self, name: _Optional[str] = ..., chain: _Optional[str] = ..., height: _Optional[int] = ..., block_hash: _Optional[str] = ..., locations_compared: _Optional[int] = ..., balances_compared: _Optional[int] = ..., transactions_compared: _Optional[int] = ..., differences: _Optional[_Iterable[_Union[Difference, _Mapping]]] = ..., unexplained_count: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger: _Optional[str] = ..., incremental: _Optional[bool] = ..., since: _Optional[str] = ...) -> None: ...

class RunReconciliationRequest(_message.Message):
    __slots__ = ("chain", "request_id", "incremental")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    chain: str
    request_id: str
    incremental: bool
    def __init__(self, chain: _Optional[str] = ..., request_id: _Optional[str] = ..., incremental: _Optional[bool] = ...) -> None: ...

class RunReconciliationResponse(_message.Message):
    __slots__ = ("reconciliation",)
    RECONCILIATION_FIELD_NUMBER: _ClassVar[int]
    reconciliation: Reconciliation
    def __init__(self, reconciliation: _Optional[_Union[Reconciliation, _Mapping]] = ...) -> None: ...

class GetReconciliationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetReconciliationResponse(_message.Message):
    __slots__ = ("reconciliation",)
    RECONCILIATION_FIELD_NUMBER: _ClassVar[int]
    reconciliation: Reconciliation
    def __init__(self, reconciliation: _Optional[_Union[Reconciliation, _Mapping]] = ...) -> None: ...

class ListReconciliationsRequest(_message.Message):
    __slots__ = ("chain", "page_size", "page_token")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    chain: str
    page_size: int
    page_token: str
    def __init__(self, chain: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReconciliationsResponse(_message.Message):
    __slots__ = ("reconciliations", "next_page_token")
    RECONCILIATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reconciliations: _containers.RepeatedCompositeFieldContainer[Reconciliation]
    next_page_token: str
    def __init__(self, reconciliations: _Optional[_Iterable[_Union[Reconciliation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
