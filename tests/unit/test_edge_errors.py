"""The edge's one mapping from what a handler raises to what a caller sees,
and the bounds every request field shares (core/api/limits.py)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st

from core.api import limits
from core.api.errors import status_of
from core.errors import invalid
from core.store.outage import database_unavailable
from kassa.core.v1 import event_pb2, invoice_pb2
from kassa.ledger.v1 import ledger_pb2


def _decoded(status) -> tuple[int, str, dict[str, object]]:
    trailing = dict(status.trailing_metadata)
    rich = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    details: dict[str, object] = {}
    for any_ in rich.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            if any_.Is(kind.DESCRIPTOR):
                message = kind()
                any_.Unpack(message)
                details[kind.__name__] = message
    return rich.code, rich.message, details


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("pool is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        # asyncpg's texts when the server ended an idle session before the next statement
        asyncpg.InternalClientError("not connected"),
        asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
        asyncpg.InternalClientError('cannot switch to state 15; protocol is in the "failed" state'),
        RuntimeError("wrapped"),  # with an outage as its cause, below
    ],
)
def test_database_unavailability_is_unavailable_with_retry_info(exc: Exception) -> None:
    if isinstance(exc, RuntimeError):
        exc.__cause__ = OSError("connection reset")
    assert database_unavailable(exc)
    code, message, details = _decoded(status_of(exc, "Test"))
    assert code == code_pb2.UNAVAILABLE
    assert details["ErrorInfo"].reason == "DATABASE_UNAVAILABLE"  # type: ignore[attr-defined]
    assert details["RetryInfo"].retry_delay.seconds >= 1  # type: ignore[attr-defined]
    assert "127.0.0.1" not in message and "5432" not in message and "asyncpg" not in message


def test_anything_unexpected_is_internal_with_an_incident_id_that_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "SELECT * FROM api_keys WHERE id = $1 -- at 10.1.2.3:5432 KeyError"
    with caplog.at_level(logging.ERROR, logger="kassa.core.api"):
        code, message, details = _decoded(status_of(ValueError(secret), "Test"))
    assert code == code_pb2.INTERNAL
    incident = details["ErrorInfo"].metadata["incident"]  # type: ignore[attr-defined]
    assert len(incident) == 16 and incident in message
    for leak in ("SELECT", "ValueError", "10.1.2.3", "5432", "api_keys", "KeyError"):
        assert leak not in message
    assert any(incident in r.getMessage() and r.exc_info for r in caplog.records)
    assert not database_unavailable(ValueError(secret))


def test_an_asyncpg_client_bug_stays_internal() -> None:
    # Only the lost-session texts of InternalClientError mean an outage; the
    # rest are the client's own faults, and retrying would hide them.
    for text in ("unexpected codec", "not connected yet", "pool is not initialized"):
        exc = asyncpg.InternalClientError(text)
        assert not database_unavailable(exc)
        assert _decoded(status_of(exc, "Test"))[0] == code_pb2.INTERNAL


def test_a_refusal_keeps_its_code_reason_and_fields() -> None:
    code, _, details = _decoded(status_of(invalid([("parent", "is required")]), "Test"))
    assert code == code_pb2.INVALID_ARGUMENT
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"  # type: ignore[attr-defined]


def test_limits_name_every_field_past_its_bounds() -> None:
    request = ledger_pb2.CreateTransfersRequest(
        transfers=[
            ledger_pb2.Transfer(id="ok", reference="a\x00b", timeout_s=2**31),
            ledger_pb2.Transfer(id="x" * 5000, user_data="u" * 513),
        ]
    )
    assert {f for f, _ in limits.check(request)} == {
        "transfers[0].reference",
        "transfers[0].timeout_s",
        "transfers[1].id",
        "transfers[1].user_data",
    }
    stream = event_pb2.StreamEventsRequest(after_sequence=2**63)
    assert [f for f, _ in limits.check(stream)] == ["after_sequence"]
    listing = invoice_pb2.ListInvoicesRequest(
        create_time_start=timestamp_pb2.Timestamp(seconds=limits.TIMESTAMP_MAX_S + 1)
    )
    assert [f for f, _ in limits.check(listing)] == ["create_time_start"]
    page = ledger_pb2.ListTransfersRequest(account_id="a", page_size=-1)
    assert [f for f, _ in limits.check(page)] == ["page_size"]
    assert limits.check(invoice_pb2.CreateInvoiceRequest(metadata={"k\x00": "v"})) == [
        ("metadata", "must not contain NUL characters")
    ]


@given(st.text(max_size=100), st.integers(-(2**63), 2**64 - 1))
def test_limits_accept_exactly_what_the_database_can_hold(text: str, number: int) -> None:
    request = ledger_pb2.CreateTransfersRequest(
        transfers=[ledger_pb2.Transfer(id="ZQX" + text, code=number % 2**32)]
    )
    problems = {f for f, _ in limits.check(request)}
    assert ("transfers[0].id" in problems) == ("\x00" in text)
    assert ("transfers[0].code" in problems) == (number % 2**32 > limits.INTEGER_MAX)
    for violation in limits.check(request):
        assert "ZQX" not in violation[1]  # never echoes the value


def test_a_refusal_quoting_huge_input_is_cut_to_bounds() -> None:
    from core.errors import not_found

    huge = "merchants/acme/invoices/" + "x" * 100_000
    status = status_of(not_found("invoice", huge), "Test")
    total = sum(len(v) for _, v in status.trailing_metadata) + len(status.details)
    assert total < 4096
    many = invalid([(f"f{i}" * 1000, "d" * 10_000) for i in range(500)])
    status = status_of(many, "Test")
    assert sum(len(v) for _, v in status.trailing_metadata) < 16_384


def test_limits_answer_the_same_once_each_field_is_known() -> None:
    # The walk reads each field's descriptor once per process (limits._plan): a second
    # check of the same messages, and the yielding one, answer as the first did.
    messages = [
        ledger_pb2.CreateTransfersRequest(
            transfers=[ledger_pb2.Transfer(id="x" * 5000, user_data="u" * 513, code=2**31)]
            * (limits.CHUNK + 2)
        ),
        invoice_pb2.CreateInvoiceRequest(metadata={"k\x00": "v", "k": "v" * 5000}),
        invoice_pb2.ListInvoicesRequest(
            create_time_start=timestamp_pb2.Timestamp(seconds=limits.TIMESTAMP_MIN_S - 1)
        ),
        event_pb2.StreamEventsRequest(after_sequence=2**63),
    ]
    limits._PLANS.clear()
    first = [limits.check(m) for m in messages]
    assert all(first)
    assert [limits.check(m) for m in messages] == first
    assert [asyncio.run(limits.check_yielding(m)) for m in messages] == first
