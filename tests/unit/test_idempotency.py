"""request_id idempotency: the pure decision, as a table and a property."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import idempotency
from core.errors import Code, Refusal
from core.idempotency import Outcome
from kassa.core.v1 import invoice_pb2

A = hashlib.sha256(b"a").digest()
B = hashlib.sha256(b"b").digest()


@pytest.mark.parametrize(
    ("first", "incoming", "outcome"),
    [
        (A, A, Outcome.REPLAY),
        (A, B, Outcome.REUSED),
        (memoryview(A).tobytes(), A, Outcome.REPLAY),
        (None, A, Outcome.REPLAY),  # kept before hashes were: taken at its word
    ],
)
def test_decide_table(first: bytes | None, incoming: bytes, outcome: Outcome) -> None:
    assert idempotency.decide(first, incoming) is outcome


def test_check_refuses_a_reused_id_with_its_reason() -> None:
    idempotency.check(A, A, "r-1", "merchants/m/invoices/i")
    with pytest.raises(Refusal) as refused:
        idempotency.check(A, B, "r-1", "merchants/m/invoices/i")
    assert refused.value.code is Code.ALREADY_EXISTS
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert refused.value.metadata == {"request_id": "r-1", "resource": "merchants/m/invoices/i"}


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_replay_exactly_when_the_bodies_are_the_same(a: bytes, b: bytes) -> None:
    outcome = idempotency.decide(idempotency.request_hash(a), idempotency.request_hash(b))
    assert (outcome is Outcome.REPLAY) is (a == b)


def test_a_message_hashes_as_its_deterministic_bytes() -> None:
    request = invoice_pb2.CancelInvoiceRequest(name="merchants/m/invoices/i", request_id="r")
    assert idempotency.request_hash(request) == idempotency.request_hash(
        request.SerializeToString(deterministic=True)
    )
    other = invoice_pb2.CancelInvoiceRequest(name="merchants/m/invoices/j", request_id="r")
    assert idempotency.request_hash(request) != idempotency.request_hash(other)


@pytest.mark.parametrize(
    ("value", "request_id", "violated"),
    [
        ("", None, False),
        ("retry-1", "retry-1", False),
        ("a.b_c:d-E9", "a.b_c:d-E9", False),
        ("x" * 128, "x" * 128, False),
        ("x" * 129, "x" * 129, True),
        ("has space", "has space", True),
        ("trailing\n", "trailing\n", True),  # `$` would have let it through
        ("ünïcode", "ünïcode", True),
    ],
)
def test_request_id_syntax(value: str, request_id: str | None, violated: bool) -> None:
    violations: list[tuple[str, str]] = []
    assert idempotency.request_id_of(value, violations) == request_id
    assert bool(violations) is violated
    assert all(field == "request_id" for field, _ in violations)
