"""Refusals below the API, mapped to google.rpc.Status once at the edge."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from core.api.errors import to_status
from core.errors import Code, Refusal, exists, invalid, not_found, precondition


def _details(status: grpc.Status) -> status_pb2.Status:
    return status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])


@pytest.mark.parametrize("code", list(Code))
def test_every_code_is_a_grpc_status(code: Code) -> None:
    status = to_status(Refusal(code, "SOME_REASON", "why"))
    assert status.code == grpc.StatusCode[code.name]
    assert _details(status).code == getattr(code_pb2, code.name)


def test_reason_domain_and_violations_reach_the_status() -> None:
    status = to_status(invalid([("a", "must be x"), ("b", "must be y")]))
    proto = _details(status)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert proto.details[0].Unpack(info) and proto.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "kassa.core")
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("a", "must be x"),
        ("b", "must be y"),
    ]
    assert status.details == "invalid request: a, b"


@pytest.mark.parametrize(
    ("refusal", "code", "reason"),
    [
        (not_found("invoice", "merchants/a/invoices/b"), Code.NOT_FOUND, "INVOICE_NOT_FOUND"),
        (
            exists("MERCHANT_EXISTS", "merchants/a already exists"),
            Code.ALREADY_EXISTS,
            "MERCHANT_EXISTS",
        ),
        (precondition("NO_RATE", "no rate"), Code.FAILED_PRECONDITION, "NO_RATE"),
        (invalid([("x", "y")], domain="kassa.ledger"), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ],
)
def test_constructors(refusal: Refusal, code: Code, reason: str) -> None:
    assert (refusal.code, refusal.reason) == (code, reason)


def test_a_refusal_still_takes_a_grpc_code() -> None:
    """Callers that say Refusal(grpc.StatusCode.X, …) keep working."""
    refusal = Refusal(grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "not enough")
    assert refusal.code is Code.FAILED_PRECONDITION
    assert to_status(refusal).code == grpc.StatusCode.FAILED_PRECONDITION


def test_what_must_never_happen() -> None:
    with pytest.raises(AssertionError):
        invalid([])  # a bad request names at least one field
    with pytest.raises(AssertionError):
        Refusal(Code.NOT_FOUND, "lower_case", "reasons are UPPER_SNAKE")
    with pytest.raises(KeyError):
        Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "LATE", "not a refusal the core makes")
