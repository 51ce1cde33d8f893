"""The core's access log, as the operator reads it: one line per RPC with the method,
the caller, the final code and reason, duration_ms and the request id the client sent
in x-request-id (or a new one), which the client also gets back in the trailing
metadata, success or error. A caller's id that is not short and plain is replaced,
never written into the log (the attacker controls the metadata)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
from localstack.procs import ManagedProcess
from localstack.stack import CoreSetup

XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
CREATE = "/kassa.core.v1.InvoiceService/CreateInvoice"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[CoreSetup]:
    run_dir: Path = tmp_path_factory.mktemp("access-log")
    setup = CoreSetup(
        run_dir=run_dir,
        dsn=postgres.create_database("access_log"),
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        health={"invoices_need_chain": False},  # no adapter runs here
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
    )
    process: ManagedProcess = setup.process().start()
    yield setup
    assert process.stop() == 0


def _access(core: CoreSetup, request_id: str) -> list[dict[str, object]]:
    """The access lines of `request_id`, once the call's line is written."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line)
            for line in (core.run_dir / "core.log").read_text().splitlines()
            if line.strip()
        ]
        found = [
            line
            for line in lines
            if line["logger"] == "kassa.access" and line["request_id"] == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _trailer(call: grpc.Call | grpc.RpcError) -> str | None:
    return dict(call.trailing_metadata() or ()).get("x-request-id")  # type: ignore[union-attr]


def _request(order: str, amount: str = "5.00") -> invoice_pb2.CreateInvoiceRequest:
    return invoice_pb2.CreateInvoiceRequest(
        parent="merchants/acme",
        merchant_order_id=order,
        asset=TOKEN,
        price=invoice_pb2.FiatAmount(amount=amount, currency="USD"),
    )


def test_a_call_has_one_line_with_the_id_the_client_sent(core: CoreSetup) -> None:
    token = core.merchant_token("acme")
    sent = "ticket-" + secrets.token_hex(6)
    with core.channel(token) as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
        _, call = stub.CreateInvoice.with_call(
            _request("access-1"), metadata=[("x-request-id", sent)]
        )
    assert _trailer(call) == sent
    (line,) = _access(core, sent)
    assert line["method"] == CREATE and line["code"] == "OK" and line["reason"] == ""
    key_id = token.split("_")[1]
    assert line["caller"] == f"merchants/acme/apiKeys/{key_id}"
    assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 60_000


def test_a_refused_call_has_its_code_reason_and_the_id_in_its_trailers(core: CoreSetup) -> None:
    sent = "ticket-" + secrets.token_hex(6)
    with core.channel(core.merchant_token("acme")) as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateInvoice(_request("access-2", "-1"), metadata=[("x-request-id", sent)])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert _trailer(refused.value) == sent
    (line,) = _access(core, sent)
    assert line["method"] == CREATE and line["code"] == "INVALID_ARGUMENT"
    assert line["reason"] and line["reason"] == line["reason"].upper()


def test_an_anonymous_call_is_logged_by_its_peer(core: CoreSetup) -> None:
    sent = "anon-" + secrets.token_hex(6)
    with core.bare_channel() as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateInvoice(_request("access-3"), metadata=[("x-request-id", sent)])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    (line,) = _access(core, sent)
    assert line["code"] == "UNAUTHENTICATED" and line["reason"]
    assert str(line["caller"]).startswith(("ipv4:", "ipv6:"))


@pytest.mark.parametrize("hostile", ['a"b', "x" * 65, "a b", "new\\nline"])
def test_a_hostile_id_is_replaced_and_the_new_one_returned(core: CoreSetup, hostile: str) -> None:
    with core.channel(core.merchant_token("acme")) as channel:
        stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
        _, call = stub.CreateInvoice.with_call(
            _request("access-" + secrets.token_hex(4)), metadata=[("x-request-id", hostile)]
        )
    replaced = _trailer(call)
    assert replaced and replaced != hostile and len(replaced) == 32
    (line,) = _access(core, replaced)
    assert line["method"] == CREATE
    assert hostile not in (core.run_dir / "core.log").read_text()
