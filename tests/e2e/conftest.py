"""The whole stack as separate processes, for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kassa.core.v1 import invoice_pb2_grpc, payout_pb2_grpc
from localstack.fullstack import LocalStack
from tests.support.events import EventTap
from tests.support.payouts import PAYOUT_SCOPES


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    # Automine, no block timer: each test mines exactly the blocks it needs.
    local = LocalStack(Path(tmp_path_factory.mktemp("stack")), block_time_s=None, postgres=postgres)
    local.start_all()
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


@pytest.fixture
def merchant(stack: LocalStack, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A merchant of this test's own, and its API key."""
    merchant_id = request.node.name.replace("_", "-")[5:45].lower().strip("-")
    return f"merchants/{merchant_id}", stack.core_setup().merchant_token(merchant_id)


@pytest.fixture
def invoices(stack: LocalStack, merchant) -> Iterator[invoice_pb2_grpc.InvoiceServiceStub]:
    with stack.core_setup().channel(merchant[1]) as channel:
        yield invoice_pb2_grpc.InvoiceServiceStub(channel)


@pytest.fixture
def tap(stack: LocalStack, merchant) -> Iterator[EventTap]:
    core = stack.core_setup()
    events = EventTap(core.target, merchant[0], merchant[1], core.api_tls())
    yield events
    events.close()


@pytest.fixture
def account(
    stack: LocalStack, request: pytest.FixtureRequest
) -> Iterator[tuple[str, object, object]]:
    """A merchant of this test's own with payout scopes: (parent, invoices, payouts)."""
    merchant_id = request.node.name.replace("_", "-")[5:45].lower().strip("-")
    token = stack.core_setup().merchant_token(merchant_id, PAYOUT_SCOPES)
    with stack.core_setup().channel(token) as channel:
        yield (
            f"merchants/{merchant_id}",
            invoice_pb2_grpc.InvoiceServiceStub(channel),
            payout_pb2_grpc.PayoutServiceStub(channel),
        )
