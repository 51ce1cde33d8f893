"""The edge's bounds check without awaiting (core.api.limits.check_at_once) answers
what check_yielding answers whenever it answers at all, and leaves to it (None)
exactly the requests check_yielding walks in chunks: the edge may send a request on
to the handler at once only when check_yielding would have."""

from __future__ import annotations

import asyncio

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from core.api import limits
from kassa.core.v1 import event_pb2, invoice_pb2
from kassa.ledger.v1 import ledger_pb2

texts = st.text(max_size=8) | st.sampled_from(["a\x00b", "x" * 257, "y" * 600, "z" * 5000])
uint32s = st.sampled_from([0, 1, limits.INTEGER_MAX, limits.INTEGER_MAX + 1, 2**32 - 1])
uint64s = st.sampled_from([0, 7, limits.BIGINT_MAX, limits.BIGINT_MAX + 1, 2**64 - 1])
seconds = st.sampled_from(
    [0, limits.TIMESTAMP_MIN_S, limits.TIMESTAMP_MIN_S - 1, limits.TIMESTAMP_MAX_S + 1]
)


@st.composite
def transfers(draw: st.DrawFn) -> ledger_pb2.Transfer:
    t = ledger_pb2.Transfer(
        id=draw(texts),
        debit_account_id=draw(texts),
        credit_account_id=draw(texts),
        amount=draw(texts),
        code=draw(uint32s),
        timeout_s=draw(uint32s),
        reference=draw(texts),
        user_data=draw(texts),
        linked=draw(st.booleans()),
    )
    if draw(st.booleans()):
        t.create_time.CopyFrom(
            timestamp_pb2.Timestamp(seconds=draw(seconds), nanos=draw(st.sampled_from([0, -1])))
        )
    return t


@st.composite
def requests(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(["transfers", "many", "invoices", "invoice", "events"]))
    if kind == "transfers":
        return ledger_pb2.CreateTransfersRequest(transfers=draw(st.lists(transfers(), max_size=3)))
    if kind == "many":  # past CHUNK: check_yielding yields, so check_at_once leaves it
        n = draw(st.sampled_from([limits.CHUNK, limits.CHUNK + 1]))
        return ledger_pb2.CreateTransfersRequest(transfers=[draw(transfers())] * n)
    if kind == "invoices":
        request = invoice_pb2.ListInvoicesRequest(
            parent=draw(texts),
            page_size=draw(uint32s),
            states=draw(st.lists(st.integers(0, 12), max_size=3)),
        )
        if draw(st.booleans()):
            request.create_time_end.seconds = draw(seconds)
        return request
    if kind == "invoice":
        return invoice_pb2.CreateInvoiceRequest(
            parent=draw(texts),
            ttl_seconds=draw(uint32s),
            metadata=draw(st.dictionaries(texts, texts, max_size=2)),
        )
    return event_pb2.StreamEventsRequest(after_sequence=draw(uint64s))


@settings(max_examples=400, deadline=None)
@given(requests())
def test_at_once_answers_as_the_yielding_walk(request: Message) -> None:
    long_list = any(
        f.is_repeated
        and f.message_type is not None
        and not f.message_type.GetOptions().map_entry
        and len(v) > limits.CHUNK
        for f, v in request.ListFields()
    )
    at_once = limits.check_at_once(request)
    if long_list:
        assert at_once is None
    else:
        assert at_once == limits.check(request)
        assert at_once == asyncio.run(limits.check_yielding(request))
