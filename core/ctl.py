"""kassactl: an operator's command line for a running core.

Every command prints a table by default and, with --json, one JSON object
per line (the API's messages, proto3 JSON) for scripts. Global options
(--target, TLS, --token/--token-file, --json) go anywhere on the line. The
API key comes from --token-file, $KASSA_TOKEN_FILE, $KASSA_TOKEN or --token
(which the process list shows) and is never printed, not even in an
argument error.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from core.clients import ApiTls, api_aio_channel, authed_channel
from core.ledger import check as ledger_check
from core.ledger.accounts import merchant_account
from core.merchants import Merchants
from core.merchants.credentials import SCOPES
from core.payouts.signer_client import body_digest, load_ed25519
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
    merchant_pb2,
    merchant_pb2_grpc,
    payout_pb2,
    payout_pb2_grpc,
    reconciliation_pb2,
    reconciliation_pb2_grpc,
    support_pb2,
    support_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from kassa.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from kassa.signer.v1 import signer_pb2

# An API key anywhere in a text: redacted from every message kassactl prints.
_TOKEN_TEXT = re.compile(r"kassa_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
# kassactl's kind names (invoice_underpaid, …) to the API's enum value names.
_KINDS = {
    k.removeprefix("ITEM_KIND_").lower(): k
    for k in support_pb2.ItemKind.DESCRIPTOR.values_by_name
    if k != "ITEM_KIND_UNSPECIFIED"
}

Column = tuple[str, Callable[[Any], object]]


def redact(text: str) -> str:
    return _TOKEN_TEXT.sub("kassa_…(redacted)", text)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors never echo an API key (a token pasted as an argument)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {redact(message)}\n")


# -- output --------------------------------------------------------------------------


def _enum_text(message: Message, field: str) -> str:
    """An enum field's value name without its type prefix, lower case (PAYOUT_STATE_X → x)."""
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    assert descriptor is not None, field
    value = descriptor.values_by_number.get(getattr(message, field))
    if value is None:
        return str(getattr(message, field))
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"
    return value.name.removeprefix(prefix).lower()


def _when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Out:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def rows(self, messages: Iterable[Message], columns: Sequence[Column]) -> None:
        """A table (or JSON lines) of the messages, printed as they come."""
        if self.as_json:
            for m in messages:
                print(json_format.MessageToJson(m, indent=None))
            return
        cells = [[str(get(m)) for _, get in columns] for m in messages]
        headers = [h for h, _ in columns]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        for row in [headers, *cells]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

    def one(self, message: Message, columns: Sequence[Column]) -> None:
        """One message: a two-column table of its fields (or one JSON object)."""
        if self.as_json:
            print(json_format.MessageToJson(message, indent=None))
            return
        width = max(len(h) for h, _ in columns)
        for header, get in columns:
            print(f"{header.ljust(width)}  {get(message)}".rstrip())


# -- columns of each message ---------------------------------------------------------

INVOICE: list[Column] = [
    ("NAME", lambda m: m.name),
    ("STATE", lambda m: _enum_text(m, "state")),
    ("FLAGS", lambda m: ",".join(invoice_pb2.InvoiceFlag.Name(f)[13:].lower() for f in m.flags)),
    ("DUE", lambda m: m.amount_due),
    ("RECEIVED", lambda m: m.amount_received),
    ("ASSET", lambda m: m.asset),
    ("CREATED", lambda m: _when(m.create_time)),
]
RUN: list[Column] = [
    ("NAME", lambda m: m.name),
    ("CHAIN", lambda m: m.chain),
    ("KIND", lambda m: "incremental" if m.incremental else "full"),
    ("HEIGHT", lambda m: m.height),
    ("COMPARED", lambda m: f"{m.balances_compared}b/{m.transactions_compared}tx"),
    ("UNEXPLAINED", lambda m: m.unexplained_count),
    ("TRIGGER", lambda m: m.trigger),
    ("STARTED", lambda m: _when(m.start_time)),
]
DIFFERENCE: list[Column] = [
    ("KIND", lambda m: _enum_text(m, "kind")),
    ("LOCATION", lambda m: m.location),
    ("ADDRESS", lambda m: m.address or m.tx_hash),
    ("LEDGER", lambda m: m.ledger_amount),
    ("CHAIN", lambda m: m.chain_amount),
    ("UNEXPLAINED", lambda m: m.unexplained_amount if m.unexplained else "explained"),
    ("DETAIL", lambda m: m.detail or ",".join(e.kind for e in m.explanations)),
]
EXCEPTION: list[Column] = [
    ("NAME", lambda m: m.name),
    ("KIND", lambda m: m.kind),
    ("RESOURCE", lambda m: m.resource),
    ("AMOUNT", lambda m: m.amount),
    ("STATE", lambda m: _enum_text(m, "state")),
    ("RESOLVED BY", lambda m: m.resolve_actor),
    ("CREATED", lambda m: _when(m.create_time)),
]
ITEM: list[Column] = [
    ("KIND", lambda m: _enum_text(m, "kind")),
    ("SUBJECT", lambda m: m.subject),
    ("AGE", lambda m: _age(m.age_seconds)),
    ("AMOUNT", lambda m: m.amount),
    ("REVIEW", lambda m: m.review_actor),
    ("ACTIONS", lambda m: ",".join(support_pb2.ActionType.Name(a)[12:].lower() for a in m.actions)),
    ("DETAIL", lambda m: m.detail),
]
ACTION: list[Column] = [
    ("NAME", lambda m: m.name),
    ("ACTION", lambda m: _enum_text(m, "action")),
    ("KIND", lambda m: _enum_text(m, "kind")),
    ("SUBJECT", lambda m: m.subject),
    ("STATE", lambda m: _enum_text(m, "state")),
    ("ACTOR", lambda m: m.actor),
    ("APPROVER", lambda m: m.approver),
    ("DECIDER", lambda m: m.decider),
    ("RESULT", lambda m: m.result),
    ("REASON", lambda m: m.reason),
    ("WHEN", lambda m: _when(m.create_time)),
]
PAYOUT: list[Column] = [
    ("NAME", lambda m: m.name),
    ("KIND", lambda m: _enum_text(m, "kind")),
    ("STATE", lambda m: _enum_text(m, "state")),
    ("AMOUNT", lambda m: m.amount),
    ("ASSET", lambda m: m.asset),
    ("DESTINATION", lambda m: m.destination),
    ("CREATED", lambda m: _when(m.create_time)),
]
SWEEP: list[Column] = [
    ("NAME", lambda m: m.name),
    ("KIND", lambda m: _enum_text(m, "kind")),
    ("STATE", lambda m: _enum_text(m, "state")),
    ("AMOUNT", lambda m: m.amount),
    ("ASSET", lambda m: m.asset),
    ("SOURCE", lambda m: m.source_address),
]
KEY: list[Column] = [
    ("NAME", lambda m: m.name),
    ("SCOPES", lambda m: ",".join(m.scopes)),
    ("DESCRIPTION", lambda m: m.description),
    ("CREATED", lambda m: _when(m.create_time)),
    ("REVOKED", lambda m: _when(m.revoke_time)),
]
ENDPOINT: list[Column] = [
    ("NAME", lambda m: m.name),
    ("URL", lambda m: m.url),
    ("EVENTS", lambda m: ",".join(m.event_types) or "*"),
    ("DISABLED", lambda m: "yes" if m.disabled else ""),
]
DELIVERY: list[Column] = [
    ("NAME", lambda m: m.name),
    ("EVENT", lambda m: m.event_type),
    ("SEQUENCE", lambda m: m.event_sequence),
    ("STATUS", lambda m: _enum_text(m, "status")),
    ("ATTEMPTS", lambda m: m.attempt_count),
    ("CREATED", lambda m: _when(m.create_time)),
]


def _pages(fetch: Callable[[str], Any], field: str) -> Iterator[Message]:
    token = ""
    while True:
        page = fetch(token)
        yield from getattr(page, field)
        token = page.next_page_token
        if not token:
            return


# -- the parser ----------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The options every command takes, anywhere on the line: the top parser
    holds the defaults; a subcommand's copy only overrides what is given."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    env = os.environ.get
    g = parser.add_argument_group("connection and output (anywhere on the line)")
    g.add_argument(
        "--target",
        default=default(env("KASSA_TARGET", "127.0.0.1:50051")),
        help="the core's gRPC address (default: $KASSA_TARGET or 127.0.0.1:50051)",
    )
    g.add_argument(
        "--token",
        default=default(None),
        help="API key; shows in the process list: prefer --token-file or $KASSA_TOKEN",
    )
    g.add_argument(
        "--token-file",
        type=Path,
        default=default(Path(env("KASSA_TOKEN_FILE", "")) if env("KASSA_TOKEN_FILE") else None),
        help="a file (mode 0600) holding the API key (default: $KASSA_TOKEN_FILE)",
    )
    g.add_argument(
        "--ca-file",
        type=Path,
        default=default(Path(env("KASSA_CA_FILE", "")) if env("KASSA_CA_FILE") else None),
        help="CA of the core's certificate (default: $KASSA_CA_FILE, else the system's roots)",
    )
    g.add_argument(
        "--server-name",
        default=default(env("KASSA_SERVER_NAME", "")),
        help="the name the core's certificate carries, when --target is an address "
        "(default: $KASSA_SERVER_NAME)",
    )
    g.add_argument(
        "--client-cert", type=Path, default=default(None), help="client certificate, if asked"
    )
    g.add_argument("--client-key", type=Path, default=default(None), help="its private key")
    g.add_argument(
        "--plaintext",
        action="store_true",
        default=default(False),
        help="no TLS, for a core with server.dev_plaintext (development only)",
    )
    g.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="one JSON object per line (the API's messages) instead of a table",
    )


class _Commands:
    """Adds subcommands that all take the global options."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str) -> None:
        self.sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")

    def add(self, name: str, help: str) -> argparse.ArgumentParser:
        p = self.sub.add_parser(name, help=help, description=help, allow_abbrev=False)
        _global_options(p, top=False)
        return p


def _write_options(p: argparse.ArgumentParser, kind: bool = True) -> None:
    p.add_argument("subject", help="the item's subject (see `kassactl support queue`)")
    if kind:
        p.add_argument("--kind", required=True, choices=sorted(_KINDS), help="the item's kind")
    p.add_argument("--reason", required=True, help="why, for the audit trail (1-500 characters)")
    p.add_argument("--request-id", default="", help="makes a retry answer the first result")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kassactl",
        description=__doc__,
        # No abbreviations: `--to` (statements) must not be taken for `--token`.
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, top=True)
    top = _Commands(parser, "command")
    m = top.add("migrate", "apply database migrations")
    _dsn_arguments(m)
    g = top.add("get", "show one invoice")
    g.add_argument("name", help="merchants/{m}/invoices/{i}")
    ls = top.add("list", "list a merchant's invoices, newest first")
    ls.add_argument("parent", help="merchants/{m}")
    e = top.add("events", "print events after a sequence")
    e.add_argument("--parent", default="", help="merchants/{m}; empty: every merchant's")
    e.add_argument("--after", type=int, default=0, help="the last sequence already seen")
    e.add_argument("--follow", action="store_true", help="keep printing new events")
    b = top.add("bootstrap-key", "create a platform API key directly in the database")
    _dsn_arguments(b)
    b.add_argument(
        "--scopes",
        default=",".join(sorted(SCOPES)),
        help="comma-separated (default: every scope the core knows)",
    )
    b.add_argument("--description", default="bootstrap")
    led = _Commands(top.add("ledger", "ledger operations"), "ledger_command")
    lc = led.add("check", "verify the ledger's invariants; non-zero on violation")
    _dsn_arguments(lc)

    stm = _Commands(top.add("statements", "account statements as CSV (ledger:read)"), "sc")
    stx = stm.add(
        "export",
        "an account's statement, or each of a merchant's accounts (in the given assets), "
        "for a period: CSV with running balances and, where the invoice recorded a "
        "rate, fiat values",
    )
    who = stx.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", help="a ledger account id")
    who.add_argument("--merchant", help="merchants/{m} or {m}: every account of the merchant")
    stx.add_argument(
        "--asset",
        action="append",
        default=[],
        help="with --merchant: only its accounts in this CAIP-19 asset (repeat; default: all)",
    )
    stx.add_argument("--from", dest="start", help="ISO 8601 time, inclusive (default: the start)")
    stx.add_argument("--to", dest="end", help="ISO 8601 time, exclusive (default: now on)")
    stx.add_argument("--out", type=Path, help="write the CSV to this file, not stdout")

    rec = _Commands(
        top.add("reconcile", "prove the ledger against a chain (reconcile:*)"),
        "reconcile_command",
    )
    rr = rec.add("run", "reconcile a chain now; exit 2 on unexplained differences")
    rr.add_argument("chain", help="CAIP-2 chain id, e.g. eip155:1")
    rr.add_argument("--request-id", default="", help="repeat a run's answer instead of running")
    rr.add_argument(
        "--incremental",
        action="store_true",
        help="only what was touched since the last run (funds sent behind Kassa's back to "
        "an untouched address wait for the next full run)",
    )
    rg = rec.add("get", "show one run with its differences")
    rg.add_argument("name", help="reconciliations/{id}")
    rl = rec.add("list", "list runs, newest first")
    rl.add_argument("--chain", default="")

    exc = _Commands(
        top.add("exceptions", "reconciliation exception entries (exceptions:*)"),
        "exceptions_command",
    )
    el = exc.add("list", "oldest first")
    el.add_argument("--resolved", action="store_true", help="resolved ones, with their audit")
    er = exc.add("resolve", "resolve one, recording who, how and why")
    er.add_argument("name", help="exceptions/{id}")
    er.add_argument("--action", choices=("acknowledge", "rebaseline"), required=True)
    er.add_argument("--reason", required=True)
    er.add_argument("--request-id", default="")

    sup = _Commands(
        top.add("support", "the support queue and its audited actions (support:*)"),
        "support_command",
    )
    sq = sup.add("queue", "what needs a person, oldest first (support:read)")
    sq.add_argument("--kind", action="append", choices=sorted(_KINDS), help="only these kinds")
    sa = sup.add(
        "accept", "accept an underpaid invoice as paid (support:accept; may need approval)"
    )
    _write_options(sa, kind=False)
    st = sup.add("top-up", "record that the customer was asked for the rest (support:write)")
    _write_options(st, kind=False)
    sr = sup.add("refund", "refund an invoice's excess or all of it (support:refund; approval)")
    _write_options(sr)
    sr.add_argument("--scope", choices=("excess", "whole"), required=True)
    sr.add_argument("--destination", required=True, help="the customer's address (0x…)")
    sv = sup.add("review", "mark an item as under review by you (support:write)")
    _write_options(sv)
    sx = sup.add("attach", "attach a transaction hash to an item's evidence (support:write)")
    _write_options(sx)
    sx.add_argument("--tx-hash", required=True, help="0x and 64 hex digits")
    sd = sup.add("redeliver", "send a failing endpoint's deliveries again (support:write)")
    _write_options(sd, kind=False)
    sk = sup.add("ack", "acknowledge an item as it stands (support:write)")
    _write_options(sk)
    sb = sup.add(
        "rebaseline",
        "accept a hot key's or treasury's reconciliation gap as its new baseline "
        "(exceptions:write; may need approval)",
    )
    _write_options(sb, kind=False)
    sp = sup.add("approve", "approve another operator's pending action (support:approve)")
    sp.add_argument("name", help="supportActions/{id}")
    sn = sup.add(
        "decline",
        "reject another operator's pending action (support:approve) or withdraw your own",
    )
    sn.add_argument("name", help="supportActions/{id}")
    sn.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    sl = sup.add("audit", "the audit trail of support actions, newest first (support:read)")
    sl.add_argument("--subject", default="", help="only the actions on this subject")

    mer = _Commands(top.add("merchants", "merchants and their API keys (merchants:admin)"), "mc")
    mc = mer.add("create", "create a merchant")
    mc.add_argument("merchant_id")
    mc.add_argument("--display-name", required=True)
    mc.add_argument("--request-id", default="")
    mg = mer.add("get", "show a merchant")
    mg.add_argument("name", help="merchants/{m}")
    mer.add("list", "every merchant, by id")
    keys = _Commands(top.add("keys", "API keys (merchants:admin)"), "kc")
    kc = keys.add("create", "create a key; its secret is shown once")
    kc.add_argument("parent", help="merchants/{m}")
    kc.add_argument("--scopes", required=True, help="comma-separated")
    kc.add_argument("--description", default="")
    kl = keys.add("list", "a merchant's keys")
    kl.add_argument("parent", help="merchants/{m}")
    kr = keys.add("revoke", "revoke a key")
    kr.add_argument("name", help="merchants/{m}/apiKeys/{k}")

    pay = _Commands(top.add("payouts", "payouts and refunds (payouts:*)"), "pc")
    pl = pay.add("list", "a merchant's payouts, oldest first")
    pl.add_argument("parent", help="merchants/{m}")
    pg = pay.add("get", "show a payout")
    pg.add_argument("name", help="merchants/{m}/payouts/{p}")
    pc = pay.add("cancel", "cancel a payout not yet signed")
    pc.add_argument("name", help="merchants/{m}/payouts/{p}")
    pa = pay.add(
        "approve",
        "sign a payout's pending sign request as an approver (payouts:approve); "
        "prints the intent the signature covers",
    )
    pa.add_argument("name", help="merchants/{m}/payouts/{p}")
    pa.add_argument("--approver-key-id", required=True, help="the approver's key id in the signer")
    pa.add_argument(
        "--key-file",
        type=Path,
        required=True,
        help="the approver's Ed25519 key: PEM (PKCS#8) or 64 hex characters (mode 0600)",
    )
    sw = _Commands(top.add("sweeps", "deposit sweeps (sweeps:*)"), "wc")
    wl = sw.add("list", "sweeps, by chain")
    wl.add_argument("--chain", default="")
    wr = sw.add("run", "plan and start sweeps of a chain now")
    wr.add_argument("chain")

    hooks = _Commands(top.add("webhooks", "webhook endpoints and deliveries (webhooks:*)"), "hc")
    hl = hooks.add("endpoints", "a merchant's endpoints")
    hl.add_argument("parent", help="merchants/{m}")
    hd = hooks.add("deliveries", "an endpoint's deliveries, newest first")
    hd.add_argument("parent", help="merchants/{m}/webhookEndpoints/{e} (- for all)")
    hd.add_argument(
        "--status", choices=("pending", "succeeded", "failed", "cancelled"), default=None
    )
    hr = hooks.add("redeliver", "queue an endpoint's events of a time range again")
    hr.add_argument("parent", help="merchants/{m}/webhookEndpoints/{e}")
    hr.add_argument("--start", required=True, help="ISO 8601 time, inclusive")
    hr.add_argument("--end", required=True, help="ISO 8601 time, exclusive")
    return parser


# -- running -------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        return read_secret_text(args.token_file, "--token-file")
    return str(args.token or os.environ.get("KASSA_TOKEN", ""))


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
    target: str,
    tls: ApiTls | None,
    parent: str,
    after: int,
    follow: bool,
    token: str,
    out: Out,
) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    async with api_aio_channel(target, tls) as channel:
        stub = event_pb2_grpc.EventServiceStub(channel)
        request = event_pb2.StreamEventsRequest(parent=parent, after_sequence=after)
        async for response in stub.StreamEvents(
            request, timeout=None if follow else 2.0, metadata=metadata
        ):
            e = response.event
            if out.as_json:
                print(json_format.MessageToJson(e, indent=None), flush=True)
                continue
            resource = e.WhichOneof("resource")
            name = getattr(e, resource).name if resource else ""
            state = _enum_text(e.invoice, "state") if resource == "invoice" else ""
            print(f"{e.sequence}\t{e.type}\t{name}\t{state}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "statements" and args.account and args.asset:
        parser.error("statements export: --asset goes with --merchant, not --account")
    out = Out(args.json)
    if "dsn" in args:
        try:
            args.dsn = _dsn_of(args)
        except SecretError as exc:
            print(f"kassactl: {exc}", file=sys.stderr)
            return 2
    if args.command == "ledger":
        return _ledger(args)
    if args.command == "bootstrap-key":
        print(asyncio.run(_bootstrap_key(args.dsn, args.scopes.split(","), args.description)))
        return 0
    if args.command == "migrate":
        try:
            applied = asyncio.run(migrate(args.dsn))
        except MigrationError as exc:
            print(f"kassactl: {exc}", file=sys.stderr)
            return 1
        print("\n".join(applied) if applied else "no pending migrations")
        return 0
    tls: ApiTls | None = None
    if not args.plaintext:
        try:
            tls = ApiTls.from_files(
                args.ca_file, args.server_name, args.client_cert, args.client_key
            )
        except (OSError, ValueError) as exc:
            print(f"kassactl: TLS: {exc}", file=sys.stderr)
            return 2
    try:
        token = _token(args)
    except SecretError as exc:
        print(f"kassactl: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "events":
            try:
                asyncio.run(
                    _events(args.target, tls, args.parent, args.after, args.follow, token, out)
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            return 0
        with authed_channel(args.target, token, tls) as channel:
            return _call(channel, args, out)
    except grpc.RpcError as exc:
        details = redact(str(exc.details()))
        reason = _reason(exc)
        code = exc.code().name
        print(f"kassactl: {code}{f' {reason}' if reason else ''}: {details}", file=sys.stderr)
        return 1


def _reason(exc: grpc.RpcError) -> str:
    """The ErrorInfo reason of a rich error, if it carries one."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        return ""
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def _call(channel: grpc.Channel, args: argparse.Namespace, out: Out) -> int:
    match args.command:
        case "get":
            stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
            out.one(stub.GetInvoice(invoice_pb2.GetInvoiceRequest(name=args.name)).invoice, INVOICE)
        case "list":
            stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
            out.rows(
                _pages(
                    lambda t: stub.ListInvoices(
                        invoice_pb2.ListInvoicesRequest(parent=args.parent, page_token=t)
                    ),
                    "invoices",
                ),
                INVOICE,
            )
        case "reconcile":
            return _reconcile(reconciliation_pb2_grpc.ReconciliationServiceStub(channel), args, out)
        case "exceptions":
            _exceptions(exception_pb2_grpc.ExceptionServiceStub(channel), args, out)
        case "support":
            _support(support_pb2_grpc.SupportServiceStub(channel), args, out)
        case "merchants" | "keys":
            _merchants(merchant_pb2_grpc.MerchantServiceStub(channel), args, out)
        case "payouts":
            _payouts(payout_pb2_grpc.PayoutServiceStub(channel), args, out)
        case "sweeps":
            _sweeps(payout_pb2_grpc.SweepServiceStub(channel), args, out)
        case "webhooks":
            _webhooks(webhook_pb2_grpc.WebhookServiceStub(channel), args, out)
        case "statements":
            return _statements(ledger_pb2_grpc.LedgerServiceStub(channel), args)
        case other:
            raise AssertionError(f"unhandled command {other}")
    return 0


def _reconcile(
    stub: reconciliation_pb2_grpc.ReconciliationServiceStub, args: argparse.Namespace, out: Out
) -> int:
    if args.reconcile_command in ("run", "get"):
        if args.reconcile_command == "run":
            run = stub.RunReconciliation(
                reconciliation_pb2.RunReconciliationRequest(
                    chain=args.chain, request_id=args.request_id, incremental=args.incremental
                ),
                timeout=600,
            ).reconciliation
        else:
            run = stub.GetReconciliation(
                reconciliation_pb2.GetReconciliationRequest(name=args.name)
            ).reconciliation
        out.one(run, RUN)
        if not out.as_json and run.differences:
            print()
            out.rows(run.differences, DIFFERENCE)
        return 2 if args.reconcile_command == "run" and run.unexplained_count else 0
    out.rows(
        _pages(
            lambda t: stub.ListReconciliations(
                reconciliation_pb2.ListReconciliationsRequest(chain=args.chain, page_token=t)
            ),
            "reconciliations",
        ),
        RUN,
    )
    return 0


def _exceptions(
    stub: exception_pb2_grpc.ExceptionServiceStub, args: argparse.Namespace, out: Out
) -> None:
    if args.exceptions_command == "resolve":
        action = {
            "acknowledge": exception_pb2.RESOLVE_ACTION_ACKNOWLEDGE,
            "rebaseline": exception_pb2.RESOLVE_ACTION_REBASELINE,
        }[args.action]
        request = exception_pb2.ResolveExceptionRequest(
            name=args.name, action=action, reason=args.reason, request_id=args.request_id
        )
        out.one(stub.ResolveException(request).exception, EXCEPTION)
        return
    state = (
        exception_pb2.EXCEPTION_STATE_RESOLVED
        if args.resolved
        else exception_pb2.EXCEPTION_STATE_OPEN
    )
    out.rows(
        _pages(
            lambda t: stub.ListExceptions(
                exception_pb2.ListExceptionsRequest(state=state, page_token=t)
            ),
            "exceptions",
        ),
        EXCEPTION,
    )


def _support(stub: support_pb2_grpc.SupportServiceStub, args: argparse.Namespace, out: Out) -> None:
    s = support_pb2
    command = args.support_command
    if command == "queue":
        kinds = [_KINDS[k] for k in args.kind or ()]
        out.rows(
            _pages(
                lambda t: stub.ListSupportItems(
                    s.ListSupportItemsRequest(kinds=kinds, page_token=t)
                ),
                "items",
            ),
            ITEM,
        )
        return
    if command == "audit":
        out.rows(
            _pages(
                lambda t: stub.ListSupportActions(
                    s.ListSupportActionsRequest(subject=args.subject, page_token=t)
                ),
                "actions",
            ),
            ACTION,
        )
        return
    if command == "approve":
        request = s.ApproveSupportActionRequest(name=args.name)
        out.one(stub.ApproveSupportAction(request).action, ACTION)
        return
    if command == "decline":
        declined = s.DeclineSupportActionRequest(name=args.name, reason=args.reason)
        out.one(stub.DeclineSupportAction(declined).action, ACTION)
        return
    common = {"subject": args.subject, "reason": args.reason, "request_id": args.request_id}
    kind = _KINDS[args.kind] if "kind" in args else "ITEM_KIND_UNSPECIFIED"
    match command:
        case "accept":
            done = stub.AcceptAsPaid(s.AcceptAsPaidRequest(**common)).action
        case "top-up":
            done = stub.RequestTopUp(s.RequestTopUpRequest(**common)).action
        case "refund":
            scope = s.REFUND_SCOPE_EXCESS if args.scope == "excess" else s.REFUND_SCOPE_WHOLE
            done = stub.RefundInvoice(
                s.RefundInvoiceRequest(
                    **common, kind=kind, scope=scope, destination=args.destination
                )
            ).action
        case "review":
            done = stub.MarkForReview(s.MarkForReviewRequest(**common, kind=kind)).action
        case "attach":
            done = stub.AttachTransaction(
                s.AttachTransactionRequest(**common, kind=kind, tx_hash=args.tx_hash)
            ).action
        case "redeliver":
            done = stub.RedeliverFailedWebhooks(s.RedeliverFailedWebhooksRequest(**common)).action
        case "ack":
            done = stub.Acknowledge(s.AcknowledgeRequest(**common, kind=kind)).action
        case "rebaseline":
            done = stub.Rebaseline(s.RebaselineRequest(**common)).action
        case other:
            raise AssertionError(f"unhandled support command {other}")
    out.one(done, ACTION)


def _merchants(
    stub: merchant_pb2_grpc.MerchantServiceStub, args: argparse.Namespace, out: Out
) -> None:
    m = merchant_pb2
    merchant: list[Column] = [
        ("NAME", lambda x: x.name),
        ("DISPLAY NAME", lambda x: x.display_name),
        ("CREATED", lambda x: _when(x.create_time)),
    ]
    if args.command == "merchants":
        if args.mc == "create":
            request = m.CreateMerchantRequest(
                merchant_id=args.merchant_id,
                display_name=args.display_name,
                request_id=args.request_id,
            )
            out.one(stub.CreateMerchant(request).merchant, merchant)
        elif args.mc == "list":
            out.rows(
                _pages(
                    lambda t: stub.ListMerchants(m.ListMerchantsRequest(page_token=t)),
                    "merchants",
                ),
                merchant,
            )
        else:
            out.one(stub.GetMerchant(m.GetMerchantRequest(name=args.name)).merchant, merchant)
        return
    if args.kc == "create":
        created = stub.CreateApiKey(
            m.CreateApiKeyRequest(
                parent=args.parent, scopes=args.scopes.split(","), description=args.description
            )
        )
        # The one place a secret is printed: it exists nowhere else to be shown.
        out.one(created, [("NAME", lambda x: x.api_key.name), ("SECRET", lambda x: x.secret)])
    elif args.kc == "list":
        out.rows(stub.ListApiKeys(m.ListApiKeysRequest(parent=args.parent)).api_keys, KEY)
    else:
        out.one(stub.RevokeApiKey(m.RevokeApiKeyRequest(name=args.name)).api_key, KEY)


def _payouts(stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace, out: Out) -> None:
    p = payout_pb2
    match args.pc:
        case "list":
            out.rows(
                _pages(
                    lambda t: stub.ListPayouts(
                        p.ListPayoutsRequest(parent=args.parent, page_token=t)
                    ),
                    "payouts",
                ),
                PAYOUT,
            )
        case "get":
            out.one(stub.GetPayout(p.GetPayoutRequest(name=args.name)).payout, PAYOUT)
        case "approve":
            out.one(_approve(stub, args), PAYOUT)
        case _:
            out.one(stub.CancelPayout(p.CancelPayoutRequest(name=args.name)).payout, PAYOUT)


def _approve(stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace) -> Message:
    """Signs the digest of the exact body the core will send, after checking
    that the body says what the payout says (what you see is what you sign)."""
    payout = stub.GetPayout(payout_pb2.GetPayoutRequest(name=args.name)).payout
    body = bytes(payout.sign_request.body)
    if payout.state != payout_pb2.PAYOUT_STATE_WAITING_APPROVAL or not body:
        raise SystemExit(
            f"kassactl: {args.name} is {_enum_text(payout, 'state')}: nothing to approve"
        )
    digest = body_digest(body)
    if digest.hex() != payout.sign_request.body_digest:
        raise SystemExit("kassactl: the sign request's digest does not match its body")
    intent = signer_pb2.SignRequestBody.FromString(body).intent
    said = (intent.destination.lower(), intent.asset.lower(), intent.amount)
    if said != (payout.destination.lower(), payout.asset.lower(), payout.amount):
        raise SystemExit(f"kassactl: the sign request says {said}, the payout does not: refused")
    print(
        f"approving {payout.amount} {payout.asset} to {payout.destination} ({args.name})",
        file=sys.stderr,
    )
    key = load_ed25519(args.key_file)
    approved: payout_pb2.ApprovePayoutResponse = stub.ApprovePayout(
        payout_pb2.ApprovePayoutRequest(
            name=args.name,
            approver_key_id=args.approver_key_id,
            signature=key.sign(digest),
            body_digest=digest.hex(),
        )
    )
    return approved.payout


def _sweeps(stub: payout_pb2_grpc.SweepServiceStub, args: argparse.Namespace, out: Out) -> None:
    p = payout_pb2
    if args.wc == "run":
        out.rows(stub.RunSweeps(p.RunSweepsRequest(chain=args.chain)).sweeps, SWEEP)
        return
    out.rows(
        _pages(
            lambda t: stub.ListSweeps(p.ListSweepsRequest(chain=args.chain, page_token=t)),
            "sweeps",
        ),
        SWEEP,
    )


def _webhooks(
    stub: webhook_pb2_grpc.WebhookServiceStub, args: argparse.Namespace, out: Out
) -> None:
    w = webhook_pb2
    match args.hc:
        case "endpoints":
            listed = stub.ListWebhookEndpoints(w.ListWebhookEndpointsRequest(parent=args.parent))
            out.rows(listed.webhook_endpoints, ENDPOINT)
        case "deliveries":
            status = f"WEBHOOK_DELIVERY_STATUS_{(args.status or 'unspecified').upper()}"
            out.rows(
                _pages(
                    lambda t: stub.ListWebhookDeliveries(
                        w.ListWebhookDeliveriesRequest(
                            parent=args.parent, status=status, page_token=t
                        )
                    ),
                    "deliveries",
                ),
                DELIVERY,
            )
        case _:
            time_range = w.TimeRange()
            time_range.start_time.FromDatetime(_iso(args.start))
            time_range.end_time.FromDatetime(_iso(args.end))
            answer = stub.RedeliverWebhooks(
                w.RedeliverWebhooksRequest(parent=args.parent, time_range=time_range)
            )
            out.one(answer, [("QUEUED", lambda x: x.delivery_count)])


def statement_accounts(args: argparse.Namespace, listed: Iterable[tuple[str, str]]) -> list[str]:
    """The ledger accounts `statements export` covers, in a fixed order: the
    one named, or the merchant's (`listed`: id and asset of each account under
    its prefix), only those in the named assets when some are."""
    if args.account:
        return [str(args.account)]
    prefix = merchant_prefix(args)
    assets = set(args.asset)
    return sorted(
        account_id
        for account_id, asset in listed
        if account_id.startswith(prefix) and (not assets or asset in assets)
    )


def merchant_prefix(args: argparse.Namespace) -> str:
    """The start of every ledger account id of the merchant (core/ledger/accounts.py)."""
    merchant_id = str(args.merchant).removeprefix("merchants/")
    return merchant_account(merchant_id, "", "available").removesuffix(":available")


def _listed_accounts(stub: ledger_pb2_grpc.LedgerServiceStub, prefix: str) -> list[tuple[str, str]]:
    """Every account whose id starts with `prefix`, page by page."""
    found: list[tuple[str, str]] = []
    token = ""
    while True:
        page = stub.ListAccounts(
            ledger_pb2.ListAccountsRequest(id_prefix=prefix, page_size=1000, page_token=token)
        )
        found += [(a.id, a.asset) for a in page.accounts]
        token = page.next_page_token
        if not token:
            return found


def _statements(stub: ledger_pb2_grpc.LedgerServiceStub, args: argparse.Namespace) -> int:
    request = ledger_pb2.ExportStatementRequest()
    if args.start:
        request.start_time.FromDatetime(_iso(args.start))
    if args.end:
        request.end_time.FromDatetime(_iso(args.end))
    listed = [] if args.account else _listed_accounts(stub, merchant_prefix(args))
    accounts = statement_accounts(args, listed)
    if not args.account and not accounts:
        where = "in these assets" if args.asset else "at all"
        print(f"kassactl: the merchant has no accounts {where}", file=sys.stderr)
        return 1
    sink = args.out.open("w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        if args.account:
            request.account_id = accounts[0]
            for chunk in stub.ExportStatement(request):
                sink.write(chunk.csv_chunk.decode("utf-8"))
            return 0
        return _merchant_statement(stub, request, accounts, sink)
    finally:
        if args.out:
            sink.close()


def _merchant_statement(
    stub: ledger_pb2_grpc.LedgerServiceStub,
    request: ledger_pb2.ExportStatementRequest,
    accounts: list[str],
    sink: Any,
) -> int:
    """Each account's statement in one CSV: an account_id column first, one header."""
    writer = csv.writer(sink, lineterminator="\n")
    exported = 0
    for account_id in accounts:
        one = ledger_pb2.ExportStatementRequest()
        one.CopyFrom(request)
        one.account_id = account_id
        text = b"".join(c.csv_chunk for c in stub.ExportStatement(one)).decode("utf-8")
        rows = list(csv.reader(io.StringIO(text)))
        assert rows, f"a statement without a header: {account_id}"
        if exported == 0:
            writer.writerow(["account_id", *rows[0]])
        writer.writerows([account_id, *row] for row in rows[1:])
        exported += 1
    assert exported == len(accounts)
    return 0


def _iso(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


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
