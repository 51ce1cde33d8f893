import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransactionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSACTION_STATUS_UNSPECIFIED: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_UNKNOWN: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_PENDING: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_SUCCEEDED: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_REVERTED: _ClassVar[TransactionStatus]
TRANSACTION_STATUS_UNSPECIFIED: TransactionStatus
TRANSACTION_STATUS_UNKNOWN: TransactionStatus
TRANSACTION_STATUS_PENDING: TransactionStatus
TRANSACTION_STATUS_SUCCEEDED: TransactionStatus
TRANSACTION_STATUS_REVERTED: TransactionStatus

class BlockCursor(_message.Message):
    __slots__ = ("height", "hash")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    height: int
    hash: str
    def __init__(self, height: _Optional[int] = ..., hash: _Optional[str] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("tx_hash", "index", "asset", "from_address", "to_address", "amount", "success", "log_index")
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TO_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    tx_hash: str
    index: int
    asset: str
    from_address: str
    to_address: str
    amount: str
    success: bool
    log_index: int
    def __init__(self, tx_hash: _Optional[str] = ..., index: _Optional[int] = ..., asset: _Optional[str] = ..., from_address: _Optional[str] = ..., to_address: _Optional[str] = ..., amount: _Optional[str] = ..., success: _Optional[bool] = ..., log_index: _Optional[int] = ...) -> None: ...

class Block(_message.Message):
    __slots__ = ("height", "hash", "parent_hash", "time", "transfers")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PARENT_HASH_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    height: int
    hash: str
    parent_hash: str
    time: _timestamp_pb2.Timestamp
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    def __init__(self, height: _Optional[int] = ..., hash: _Optional[str] = ..., parent_hash: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ...) -> None: ...

class Undo(_message.Message):
    __slots__ = ("to_cursor", "from_height")
    TO_CURSOR_FIELD_NUMBER: _ClassVar[int]
    FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    to_cursor: BlockCursor
    from_height: int
    def __init__(self, to_cursor: _Optional[_Union[BlockCursor, _Mapping]] = ..., from_height: _Optional[int] = ...) -> None: ...

class Head(_message.Message):
    __slots__ = ("head", "observe_time")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_TIME_FIELD_NUMBER: _ClassVar[int]
    head: BlockCursor
    observe_time: _timestamp_pb2.Timestamp
    def __init__(self, head: _Optional[_Union[BlockCursor, _Mapping]] = ..., observe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Pending(_message.Message):
    __slots__ = ("transfers", "observe_time")
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_TIME_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    observe_time: _timestamp_pb2.Timestamp
    def __init__(self, transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ..., observe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BlockEvent(_message.Message):
    __slots__ = ("block", "undo", "head", "pending")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    UNDO_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    block: Block
    undo: Undo
    head: Head
    pending: Pending
    def __init__(self, block: _Optional[_Union[Block, _Mapping]] = ..., undo: _Optional[_Union[Undo, _Mapping]] = ..., head: _Optional[_Union[Head, _Mapping]] = ..., pending: _Optional[_Union[Pending, _Mapping]] = ...) -> None: ...

class GetChainInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetChainInfoResponse(_message.Message):
    __slots__ = ("chain", "native_asset", "tokens", "head")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NATIVE_ASSET_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    chain: str
    native_asset: str
    tokens: _containers.RepeatedScalarFieldContainer[str]
    head: BlockCursor
    def __init__(self, chain: _Optional[str] = ..., native_asset: _Optional[str] = ..., tokens: _Optional[_Iterable[str]] = ..., head: _Optional[_Union[BlockCursor, _Mapping]] = ...) -> None: ...

class StreamBlocksRequest(_message.Message):
    __slots__ = ("from_cursor", "locator", "include_pending")
    FROM_CURSOR_FIELD_NUMBER: _ClassVar[int]
    LOCATOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PENDING_FIELD_NUMBER: _ClassVar[int]
    from_cursor: BlockCursor
    locator: _containers.RepeatedCompositeFieldContainer[BlockCursor]
    include_pending: bool
    def __init__(self, from_cursor: _Optional[_Union[BlockCursor, _Mapping]] = ..., locator: _Optional[_Iterable[_Union[BlockCursor, _Mapping]]] = ..., include_pending: _Optional[bool] = ...) -> None: ...

class StreamBlocksResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: BlockEvent
    def __init__(self, event: _Optional[_Union[BlockEvent, _Mapping]] = ...) -> None: ...

class BroadcastTransactionRequest(_message.Message):
    __slots__ = ("raw_transaction",)
    RAW_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    raw_transaction: bytes
    def __init__(self, raw_transaction: _Optional[bytes] = ...) -> None: ...

class BroadcastTransactionResponse(_message.Message):
    __slots__ = ("tx_hash", "already_known")
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    ALREADY_KNOWN_FIELD_NUMBER: _ClassVar[int]
    tx_hash: str
    already_known: bool
    def __init__(self, tx_hash: _Optional[str] = ..., already_known: _Optional[bool] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("pending_nonce", "latest_nonce", "balance")
    PENDING_NONCE_FIELD_NUMBER: _ClassVar[int]
    LATEST_NONCE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    pending_nonce: int
    latest_nonce: int
    balance: str
    def __init__(self, pending_nonce: _Optional[int] = ..., latest_nonce: _Optional[int] = ..., balance: _Optional[str] = ...) -> None: ...

class GetTokenBalanceRequest(_message.Message):
    __slots__ = ("address", "asset")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    address: str
    asset: str
    def __init__(self, address: _Optional[str] = ..., asset: _Optional[str] = ...) -> None: ...

class GetTokenBalanceResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: str
    def __init__(self, balance: _Optional[str] = ...) -> None: ...

class EstimateFeesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EstimateFeesResponse(_message.Message):
    __slots__ = ("base_fee_per_gas", "max_priority_fee_per_gas", "max_fee_per_gas")
    BASE_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    MAX_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    base_fee_per_gas: str
    max_priority_fee_per_gas: str
    max_fee_per_gas: str
    def __init__(self, base_fee_per_gas: _Optional[str] = ..., max_priority_fee_per_gas: _Optional[str] = ..., max_fee_per_gas: _Optional[str] = ...) -> None: ...

class EstimateTransferGasRequest(_message.Message):
    __slots__ = ("from_address", "to_address", "asset", "amount")
    FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TO_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    from_address: str
    to_address: str
    asset: str
    amount: str
    def __init__(self, from_address: _Optional[str] = ..., to_address: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class EstimateTransferGasResponse(_message.Message):
    __slots__ = ("gas",)
    GAS_FIELD_NUMBER: _ClassVar[int]
    gas: int
    def __init__(self, gas: _Optional[int] = ...) -> None: ...

class GetTransactionRequest(_message.Message):
    __slots__ = ("tx_hash",)
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    tx_hash: str
    def __init__(self, tx_hash: _Optional[str] = ...) -> None: ...

class GetTransactionResponse(_message.Message):
    __slots__ = ("status", "block", "fee_paid", "confirmations")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    FEE_PAID_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    status: TransactionStatus
    block: BlockCursor
    fee_paid: str
    confirmations: int
    def __init__(self, status: _Optional[_Union[TransactionStatus, str]] = ..., block: _Optional[_Union[BlockCursor, _Mapping]] = ..., fee_paid: _Optional[str] = ..., confirmations: _Optional[int] = ...) -> None: ...

class BalanceQuery(_message.Message):
    __slots__ = ("address", "asset")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    address: str
    asset: str
    def __init__(self, address: _Optional[str] = ..., asset: _Optional[str] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ("height", "queries")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    height: int
    queries: _containers.RepeatedCompositeFieldContainer[BalanceQuery]
    def __init__(self, height: _Optional[int] = ..., queries: _Optional[_Iterable[_Union[BalanceQuery, _Mapping]]] = ...) -> None: ...

class GetBalancesResponse(_message.Message):
    __slots__ = ("block", "balances")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    block: BlockCursor
    balances: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, block: _Optional[_Union[BlockCursor, _Mapping]] = ..., balances: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTransfersRequest(_message.Message):
    __slots__ = ("tx_hashes",)
    TX_HASHES_FIELD_NUMBER: _ClassVar[int]
    tx_hashes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tx_hashes: _Optional[_Iterable[str]] = ...) -> None: ...

class TransactionTransfers(_message.Message):
    __slots__ = ("tx_hash", "status", "block", "from_address", "to_address", "transfers", "fee_paid")
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TO_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    FEE_PAID_FIELD_NUMBER: _ClassVar[int]
    tx_hash: str
    status: TransactionStatus
    block: BlockCursor
    from_address: str
    to_address: str
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    fee_paid: str
    def __init__(self, tx_hash: _Optional[str] = ..., status: _Optional[_Union[TransactionStatus, str]] = ..., block: _Optional[_Union[BlockCursor, _Mapping]] = ..., from_address: _Optional[str] = ..., to_address: _Optional[str] = ..., transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ..., fee_paid: _Optional[str] = ...) -> None: ...

class GetTransfersResponse(_message.Message):
    __slots__ = ("transactions",)
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[TransactionTransfers]
    def __init__(self, transactions: _Optional[_Iterable[_Union[TransactionTransfers, _Mapping]]] = ...) -> None: ...
