import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvoiceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_STATE_UNSPECIFIED: _ClassVar[InvoiceState]
    INVOICE_STATE_AWAITING_PAYMENT: _ClassVar[InvoiceState]
    INVOICE_STATE_DETECTED: _ClassVar[InvoiceState]
    INVOICE_STATE_CONFIRMING: _ClassVar[InvoiceState]
    INVOICE_STATE_PAID: _ClassVar[InvoiceState]
    INVOICE_STATE_UNDERPAID: _ClassVar[InvoiceState]
    INVOICE_STATE_OVERPAID: _ClassVar[InvoiceState]
    INVOICE_STATE_EXPIRED: _ClassVar[InvoiceState]
    INVOICE_STATE_CANCELLED: _ClassVar[InvoiceState]
    INVOICE_STATE_REFUNDED: _ClassVar[InvoiceState]

class InvoiceFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_FLAG_UNSPECIFIED: _ClassVar[InvoiceFlag]
    INVOICE_FLAG_PAID_LATE: _ClassVar[InvoiceFlag]
    INVOICE_FLAG_PAID_PARTIAL: _ClassVar[InvoiceFlag]
    INVOICE_FLAG_PAID_OVER: _ClassVar[InvoiceFlag]
    INVOICE_FLAG_DUPLICATE: _ClassVar[InvoiceFlag]
    INVOICE_FLAG_WRONG_ASSET: _ClassVar[InvoiceFlag]
    INVOICE_FLAG_MARKED: _ClassVar[InvoiceFlag]

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PENDING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CONFIRMING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_CONFIRMED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REORGED: _ClassVar[PaymentStatus]
INVOICE_STATE_UNSPECIFIED: InvoiceState
INVOICE_STATE_AWAITING_PAYMENT: InvoiceState
INVOICE_STATE_DETECTED: InvoiceState
INVOICE_STATE_CONFIRMING: InvoiceState
INVOICE_STATE_PAID: InvoiceState
INVOICE_STATE_UNDERPAID: InvoiceState
INVOICE_STATE_OVERPAID: InvoiceState
INVOICE_STATE_EXPIRED: InvoiceState
INVOICE_STATE_CANCELLED: InvoiceState
INVOICE_STATE_REFUNDED: InvoiceState
INVOICE_FLAG_UNSPECIFIED: InvoiceFlag
INVOICE_FLAG_PAID_LATE: InvoiceFlag
INVOICE_FLAG_PAID_PARTIAL: InvoiceFlag
INVOICE_FLAG_PAID_OVER: InvoiceFlag
INVOICE_FLAG_DUPLICATE: InvoiceFlag
INVOICE_FLAG_WRONG_ASSET: InvoiceFlag
INVOICE_FLAG_MARKED: InvoiceFlag
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_PENDING: PaymentStatus
PAYMENT_STATUS_CONFIRMING: PaymentStatus
PAYMENT_STATUS_CONFIRMED: PaymentStatus
PAYMENT_STATUS_REORGED: PaymentStatus

class FiatAmount(_message.Message):
    __slots__ = ("amount", "currency")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    amount: str
    currency: str
    def __init__(self, amount: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class Quote(_message.Message):
    __slots__ = ("rate", "source", "quote_time")
    RATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_TIME_FIELD_NUMBER: _ClassVar[int]
    rate: str
    source: str
    quote_time: _timestamp_pb2.Timestamp
    def __init__(self, rate: _Optional[str] = ..., source: _Optional[str] = ..., quote_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("tx_hash", "transfer_index", "asset", "from_address", "amount", "block_height", "block_hash", "confirmations", "status")
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_INDEX_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    tx_hash: str
    transfer_index: int
    asset: str
    from_address: str
    amount: str
    block_height: int
    block_hash: str
    confirmations: int
    status: PaymentStatus
    def __init__(self, tx_hash: _Optional[str] = ..., transfer_index: _Optional[int] = ..., asset: _Optional[str] = ..., from_address: _Optional[str] = ..., amount: _Optional[str] = ..., block_height: _Optional[int] = ..., block_hash: _Optional[str] = ..., confirmations: _Optional[int] = ..., status: _Optional[_Union[PaymentStatus, str]] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("name", "merchant_order_id", "asset", "network", "amount_due", "asset_decimals", "price", "quote", "deposit_address", "expire_time", "confirmations_required", "state", "flags", "amount_received", "amount_pending", "metadata", "payments", "create_time", "update_time", "underpayment_tolerance", "monitoring_end_time", "amount_refunded", "mark", "amount_refundable")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    ASSET_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    DEPOSIT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_PENDING_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UNDERPAYMENT_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    MONITORING_END_TIME_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_REFUNDABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    merchant_order_id: str
    asset: str
    network: str
    amount_due: str
    asset_decimals: int
    price: FiatAmount
    quote: Quote
    deposit_address: str
    expire_time: _timestamp_pb2.Timestamp
    confirmations_required: int
    state: InvoiceState
    flags: _containers.RepeatedScalarFieldContainer[InvoiceFlag]
    amount_received: str
    amount_pending: str
    metadata: _containers.ScalarMap[str, str]
    payments: _containers.RepeatedCompositeFieldContainer[Payment]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    underpayment_tolerance: str
    monitoring_end_time: _timestamp_pb2.Timestamp
    amount_refunded: str
    mark: InvoiceMark
    amount_refundable: str
    def __init__(self, name: _Optional[str] = ..., merchant_order_id: _Optional[str] = ..., asset: _Optional[str] = ..., network: _Optional[str] = ..., amount_due: _Optional[str] = ..., asset_decimals: _Optional[int] = ..., price: _Optional[_Union[FiatAmount, _Mapping]] = ..., quote: _Optional[_Union[Quote, _Mapping]] = ..., deposit_address: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confirmations_required: _Optional[int] = ..., state: _Optional[_Union[InvoiceState, str]] = ..., flags: _Optional[_Iterable[_Union[InvoiceFlag, str]]] = ..., amount_received: _Optional[str] = ..., amount_pending: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., payments: _Optional[_Iterable[_Union[Payment, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., underpayment_tolerance: _Optional[str] = ..., monitoring_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amount_refunded: _Optional[str] = ..., mark: _Optional[_Union[InvoiceMark, _Mapping]] = ..., amount_refundable: _Optional[str] = ...) -> None: ...

class InvoiceMark(_message.Message):
    __slots__ = ("state", "reason", "actor", "mark_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    MARK_TIME_FIELD_NUMBER: _ClassVar[int]
    state: InvoiceState
    reason: str
    actor: str
    mark_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[InvoiceState, str]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., mark_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateInvoiceRequest(_message.Message):
    __slots__ = ("parent", "request_id", "merchant_order_id", "asset", "price", "asset_amount", "ttl_seconds", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PARENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    ASSET_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    parent: str
    request_id: str
    merchant_order_id: str
    asset: str
    price: FiatAmount
    asset_amount: str
    ttl_seconds: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, parent: _Optional[str] = ..., request_id: _Optional[str] = ..., merchant_order_id: _Optional[str] = ..., asset: _Optional[str] = ..., price: _Optional[_Union[FiatAmount, _Mapping]] = ..., asset_amount: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "states", "flags", "asset", "create_time_start", "create_time_end", "merchant_order_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_START_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_END_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[InvoiceState]
    flags: _containers.RepeatedScalarFieldContainer[InvoiceFlag]
    asset: str
    create_time_start: _timestamp_pb2.Timestamp
    create_time_end: _timestamp_pb2.Timestamp
    merchant_order_id: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[InvoiceState, str]]] = ..., flags: _Optional[_Iterable[_Union[InvoiceFlag, str]]] = ..., asset: _Optional[str] = ..., create_time_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., merchant_order_id: _Optional[str] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("invoices", "next_page_token")
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    next_page_token: str
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelInvoiceRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class MarkInvoiceRequest(_message.Message):
    __slots__ = ("name", "request_id", "state", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    state: InvoiceState
    reason: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ..., state: _Optional[_Union[InvoiceState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class MarkInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...
