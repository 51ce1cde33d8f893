"""kassactl: an operator's command line for a running core."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format

from core.clients import ApiTls, api_aio_channel, authed_channel
from core.ledger import check as ledger_check
from core.merchants import Merchants
from core.merchants.credentials import SCOPES
from core.secretfiles import SecretError, read_secret_text
from core.store.db import create_pool
from core.store.migrate import MigrationError, migrate
from kassa.core.v1 import (
    event_pb2,
    event_pb2_grpc,
    exception_pb2,
    exception_pb2_grpc,
    invoice_pb2,
    invoice_pb2_grpc,
    reconciliation_pb2,
    reconciliation_pb2_grpc,
)


def _print(message: object) -> None:
    print(json_format.MessageToJson(message, indent=None))  # type: ignore[arg-type]


async def _bootstrap_key(dsn: str, scopes: list[str], description: str) -> str:
    """The first platform key, made with database access (there is no key to call the API with yet)."""
    await migrate(dsn)
    pool = await create_pool(dsn, max_size=1, min_size=1)
    try:
        _, token = await Merchants(pool).create_key(None, scopes, description)
    finally:
        await pool.close()
    return token


async def _events(
    target: str, tls: ApiTls | None, parent: str, after: int, follow: bool, token: str
) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    async with api_aio_channel(target, tls) as channel:
        stub = event_pb2_grpc.EventServiceStub(channel)
        request = event_pb2.StreamEventsRequest(parent=parent, after_sequence=after)
        async for response in stub.StreamEvents(
            request, timeout=None if follow else 2.0, metadata=metadata
        ):
            print(
                f"{response.event.sequence}\t{response.event.type}\t{response.event.invoice.name}"
                f"\t{invoice_pb2.InvoiceState.Name(response.event.invoice.state)}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassactl", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051", help="core's gRPC address")
    parser.add_argument(
        "--token",
        default=os.environ.get("KASSA_TOKEN", ""),
        help="API key (default: $KASSA_TOKEN); never logged",
    )
    env = os.environ.get
    parser.add_argument(
        "--ca-file",
        type=Path,
        default=Path(os.environ["KASSA_CA_FILE"]) if env("KASSA_CA_FILE") else None,
        help="CA of the core's certificate (default: $KASSA_CA_FILE, else the system's roots)",
    )
    parser.add_argument(
        "--server-name",
        default=env("KASSA_SERVER_NAME", ""),
        help="the name the core's certificate carries, when --target is an address "
        "(default: $KASSA_SERVER_NAME)",
    )
    parser.add_argument("--client-cert", type=Path, help="client certificate, where the core asks")
    parser.add_argument("--client-key", type=Path, help="its private key")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="no TLS, for a core with server.dev_plaintext (development only)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="apply database migrations")
    _dsn_arguments(m)
    g = sub.add_parser("get", help="show one invoice")
    g.add_argument("name", help="merchants/{m}/invoices/{i}")
    ls = sub.add_parser("list", help="list a merchant's invoices")
    ls.add_argument("parent", help="merchants/{m}")
    e = sub.add_parser("events", help="print events after a sequence")
    e.add_argument("--parent", default="")
    e.add_argument("--after", type=int, default=0)
    e.add_argument("--follow", action="store_true")
    b = sub.add_parser("bootstrap-key", help="create a platform API key directly in the database")
    _dsn_arguments(b)
    b.add_argument(
        "--scopes",
        default=",".join(sorted(SCOPES)),
        help="comma-separated (default: every scope the core knows)",
    )
    b.add_argument("--description", default="bootstrap")
    led = sub.add_parser("ledger", help="ledger operations")
    led_sub = led.add_subparsers(dest="ledger_command", required=True)
    lc = led_sub.add_parser("check", help="verify the ledger's invariants; non-zero on violation")
    _dsn_arguments(lc)
    rec = sub.add_parser("reconcile", help="prove the ledger against a chain (reconcile:*)")
    rec_sub = rec.add_subparsers(dest="reconcile_command", required=True)
    rr = rec_sub.add_parser("run", help="reconcile a chain now; exit 2 on unexplained differences")
    rr.add_argument("chain", help="CAIP-2 chain id, e.g. eip155:1")
    rr.add_argument(
        "--request-id", default="", help="repeat a run's answer instead of running again"
    )
    rg = rec_sub.add_parser("get", help="show one run with its differences")
    rg.add_argument("name", help="reconciliations/{id}")
    rl = rec_sub.add_parser("list", help="list runs, newest first")
    rl.add_argument("--chain", default="")
    exc = sub.add_parser("exceptions", help="what needs a person (exceptions:*)")
    exc_sub = exc.add_subparsers(dest="exceptions_command", required=True)
    el = exc_sub.add_parser("list", help="oldest first")
    el.add_argument("--resolved", action="store_true", help="resolved ones, with their audit")
    er = exc_sub.add_parser("resolve", help="resolve one, recording who, how and why")
    er.add_argument("name", help="exceptions/{id}")
    er.add_argument("--action", choices=("acknowledge", "rebaseline"), required=True)
    er.add_argument("--reason", required=True)
    er.add_argument("--request-id", default="")
    args = parser.parse_args(argv)
    if "dsn" in args:
        try:
            args.dsn = _dsn_of(args)
        except SecretError as exc:
            print(f"kassactl: {exc}", file=sys.stderr)
            return 2
    tls: ApiTls | None = None
    if not args.plaintext:
        try:
            tls = ApiTls.from_files(
                args.ca_file, args.server_name, args.client_cert, args.client_key
            )
        except (OSError, ValueError) as exc:
            print(f"kassactl: TLS: {exc}", file=sys.stderr)
            return 2
    if args.command == "ledger":
        return _ledger(args)
    if args.command == "bootstrap-key":
        print(asyncio.run(_bootstrap_key(args.dsn, args.scopes.split(","), args.description)))
        return 0
    try:
        if args.command == "migrate":
            applied = asyncio.run(migrate(args.dsn))
            print("\n".join(applied) if applied else "no pending migrations")
        elif args.command == "get":
            with authed_channel(args.target, args.token, tls) as channel:
                stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
                _print(stub.GetInvoice(invoice_pb2.GetInvoiceRequest(name=args.name)).invoice)
        elif args.command == "list":
            with authed_channel(args.target, args.token, tls) as channel:
                stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
                token = ""
                while True:
                    page = stub.ListInvoices(
                        invoice_pb2.ListInvoicesRequest(parent=args.parent, page_token=token)
                    )
                    for invoice in page.invoices:
                        _print(invoice)
                    token = page.next_page_token
                    if not token:
                        break
        elif args.command == "reconcile":
            with authed_channel(args.target, args.token, tls) as channel:
                return _reconcile(reconciliation_pb2_grpc.ReconciliationServiceStub(channel), args)
        elif args.command == "exceptions":
            with authed_channel(args.target, args.token, tls) as channel:
                _exceptions(exception_pb2_grpc.ExceptionServiceStub(channel), args)
        elif args.command == "events":
            try:
                asyncio.run(
                    _events(args.target, tls, args.parent, args.after, args.follow, args.token)
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
    except grpc.RpcError as exc:
        print(f"kassactl: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    except MigrationError as exc:
        print(f"kassactl: {exc}", file=sys.stderr)
        return 1
    return 0


def _reconcile(
    stub: reconciliation_pb2_grpc.ReconciliationServiceStub, args: argparse.Namespace
) -> int:
    if args.reconcile_command == "run":
        run = stub.RunReconciliation(
            reconciliation_pb2.RunReconciliationRequest(
                chain=args.chain, request_id=args.request_id
            ),
            timeout=600,
        ).reconciliation
        _print(run)
        return 2 if run.unexplained_count else 0
    if args.reconcile_command == "get":
        request = reconciliation_pb2.GetReconciliationRequest(name=args.name)
        _print(stub.GetReconciliation(request).reconciliation)
        return 0
    token = ""
    while True:
        page = stub.ListReconciliations(
            reconciliation_pb2.ListReconciliationsRequest(chain=args.chain, page_token=token)
        )
        for run in page.reconciliations:
            _print(run)
        token = page.next_page_token
        if not token:
            return 0


def _exceptions(stub: exception_pb2_grpc.ExceptionServiceStub, args: argparse.Namespace) -> None:
    if args.exceptions_command == "resolve":
        action = {
            "acknowledge": exception_pb2.RESOLVE_ACTION_ACKNOWLEDGE,
            "rebaseline": exception_pb2.RESOLVE_ACTION_REBASELINE,
        }[args.action]
        request = exception_pb2.ResolveExceptionRequest(
            name=args.name, action=action, reason=args.reason, request_id=args.request_id
        )
        _print(stub.ResolveException(request).exception)
        return
    state = (
        exception_pb2.EXCEPTION_STATE_RESOLVED
        if args.resolved
        else exception_pb2.EXCEPTION_STATE_OPEN
    )
    token = ""
    while True:
        page = stub.ListExceptions(
            exception_pb2.ListExceptionsRequest(state=state, page_token=token)
        )
        for entry in page.exceptions:
            _print(entry)
        token = page.next_page_token
        if not token:
            return


def _dsn_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="database DSN; one with a password shows in the process list: "
        "prefer --dsn-file or $KASSA_DSN",
    )
    parser.add_argument("--dsn-file", type=Path, help="a file (mode 0600) holding the DSN")


def _dsn_of(args: argparse.Namespace) -> str:
    if args.dsn and args.dsn_file:
        raise SecretError("--dsn and --dsn-file: give one of them")
    if args.dsn_file:
        return read_secret_text(args.dsn_file, "--dsn-file")
    found = args.dsn or os.environ.get("KASSA_DSN", "")
    if not found:
        raise SecretError("a database is needed: --dsn-file FILE, $KASSA_DSN or --dsn")
    return str(found)


def _ledger(args: argparse.Namespace) -> int:
    violation, accounts, transfers = asyncio.run(ledger_check.run(args.dsn))
    if violation is not None:
        print(f"kassactl: ledger check failed: {violation}", file=sys.stderr)
        return 1
    print(f"ledger check: ok ({accounts} accounts, {transfers} transfers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
