"""The wire fuzzer (tests/support/wire_fuzz.py) over PayoutService and
SweepService, which a core serves only with a [signer]: the whole local
stack, the same oracle (no UNKNOWN/INTERNAL, no internals, INVALID_ARGUMENT
names request fields, nothing written on a refusal)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.server import SERVICES
from localstack.fullstack import LocalStack
from tests.support import wire_fuzz

METHODS = [
    m for m in wire_fuzz.methods(SERVICES) if m.service.endswith(("PayoutService", "SweepService"))
]


@pytest.fixture(scope="module")
def admin(stack: LocalStack) -> Iterator[grpc.Channel]:
    setup = stack.core_setup()
    with setup.channel(setup.admin_token()) as channel:
        yield channel


@pytest.fixture(scope="module")
def rows(stack: LocalStack) -> Iterator[wire_fuzz.RowCounter]:
    counter = wire_fuzz.RowCounter(stack.core_setup().dsn)
    yield counter
    counter.close()


def test_payout_and_sweep_rpcs_are_fuzzed() -> None:
    assert {m.name for m in METHODS} >= {"CreatePayout", "CreateRefund", "ListSweeps"}


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_wire_fuzz_payouts(method: wire_fuzz.Method, data: st.DataObject, admin, rows) -> None:
    wire_fuzz.one_example(method, data, admin, rows)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path)
def test_undecodable_and_anonymous(method: wire_fuzz.Method, admin, stack: LocalStack) -> None:
    code, error = wire_fuzz.invoke(admin, method, b"\xff\xff\xff")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and error is not None
    assert error.reason == "MESSAGE_UNDECODABLE"
    with stack.core_setup().bare_channel() as anonymous:
        code, _ = wire_fuzz.invoke(anonymous, method, wire_fuzz.poisoned(method))
    assert code == grpc.StatusCode.UNAUTHENTICATED
