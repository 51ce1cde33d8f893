"""The Literal sets that `match … assert_never` checks are the protos' oneofs.

The generated stubs type WhichOneof as str, so the handlers name each
oneof's members in a Literal; if a member is added to a proto, this fails
until the handler's match (and its Literal) handle it.
"""

from __future__ import annotations

from typing import get_args

import pytest
from google.protobuf.message import Message

from core.api import validate, webhook_service
from kassa.core.v1 import invoice_pb2, webhook_pb2


@pytest.mark.parametrize(
    ("message", "oneof", "handled"),
    [
        (invoice_pb2.CreateInvoiceRequest, "amount", validate.AmountKind),
        (webhook_pb2.RedeliverWebhooksRequest, "target", webhook_service.TargetKind),
    ],
)
def test_each_handled_set_is_the_oneof(message: type[Message], oneof: str, handled: object) -> None:
    fields = {f.name for f in message.DESCRIPTOR.oneofs_by_name[oneof].fields}
    assert set(get_args(handled)) == fields
