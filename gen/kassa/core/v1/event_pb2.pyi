import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kassa.core.v1 import invoice_pb2 as _invoice_pb2
from kassa.core.v1 import payout_pb2 as _payout_pb2
from kassa.core.v1 import reconciliation_pb2 as _reconciliation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamEventsRequest(_message.Message):
    __slots__ = ("parent", "after_sequence", "types")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    parent: str
    after_sequence: int
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., after_sequence: _Optional[int] = ..., types: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "sequence", "type", "create_time", "invoice", "payout", "reconciliation")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    RECONCILIATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    sequence: int
    type: str
    create_time: _timestamp_pb2.Timestamp
    invoice: _invoice_pb2.Invoice
    payout: _payout_pb2.Payout
    reconciliation: _reconciliation_pb2.Reconciliation
    def __init__(self, id: _Optional[str] = ..., sequence: _Optional[int] = ..., type: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., invoice: _Optional[_Union[_invoice_pb2.Invoice, _Mapping]] = ..., payout: _Optional[_Union[_payout_pb2.Payout, _Mapping]] = ..., reconciliation: _Optional[_Union[_reconciliation_pb2.Reconciliation, _Mapping]] = ...) -> None: ...
