import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExceptionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXCEPTION_STATE_UNSPECIFIED: _ClassVar[ExceptionState]
    EXCEPTION_STATE_OPEN: _ClassVar[ExceptionState]
    EXCEPTION_STATE_RESOLVED: _ClassVar[ExceptionState]

class ResolveAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLVE_ACTION_UNSPECIFIED: _ClassVar[ResolveAction]
    RESOLVE_ACTION_ACKNOWLEDGE: _ClassVar[ResolveAction]
    RESOLVE_ACTION_REBASELINE: _ClassVar[ResolveAction]
EXCEPTION_STATE_UNSPECIFIED: ExceptionState
EXCEPTION_STATE_OPEN: ExceptionState
EXCEPTION_STATE_RESOLVED: ExceptionState
RESOLVE_ACTION_UNSPECIFIED: ResolveAction
RESOLVE_ACTION_ACKNOWLEDGE: ResolveAction
RESOLVE_ACTION_REBASELINE: ResolveAction

class ExceptionEntry(_message.Message):
    __slots__ = ("name", "kind", "resource", "evidence", "detail", "amount", "state", "create_time", "update_time", "resolve_action", "resolve_actor", "resolve_reason", "resolve_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_REASON_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    resource: str
    evidence: str
    detail: str
    amount: str
    state: ExceptionState
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    resolve_action: ResolveAction
    resolve_actor: str
    resolve_reason: str
    resolve_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., resource: _Optional[str] = ..., evidence: _Optional[str] = ..., detail: _Optional[str] = ..., amount: _Optional[str] = ..., state: _Optional[_Union[ExceptionState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolve_action: _Optional[_Union[ResolveAction, str]] = ..., resolve_actor: _Optional[str] = ..., resolve_reason: _Optional[str] = ..., resolve_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListExceptionsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: ExceptionState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[ExceptionState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExceptionsResponse(_message.Message):
    __slots__ = ("exceptions", "next_page_token")
    EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    exceptions: _containers.RepeatedCompositeFieldContainer[ExceptionEntry]
    next_page_token: str
    def __init__(self, exceptions: _Optional[_Iterable[_Union[ExceptionEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveExceptionRequest(_message.Message):
    __slots__ = ("name", "action", "reason", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: ResolveAction
    reason: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[ResolveAction, str]] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ResolveExceptionResponse(_message.Message):
    __slots__ = ("exception",)
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    exception: ExceptionEntry
    def __init__(self, exception: _Optional[_Union[ExceptionEntry, _Mapping]] = ...) -> None: ...
