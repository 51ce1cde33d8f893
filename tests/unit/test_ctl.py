"""kassactl's command line without a core: global options anywhere, tables
and JSON, and an API key never echoed (argument errors included)."""

from __future__ import annotations

import json

import pytest

from core import ctl
from kassa.core.v1 import support_pb2

TOKEN = "kassa_0123456789abcdef_" + "A" * 43


def test_global_options_go_anywhere_on_the_line() -> None:
    parser = ctl.build_parser()
    before = parser.parse_args(["--json", "--target", "a:1", "support", "queue"])
    after = parser.parse_args(["support", "queue", "--target", "a:1", "--json"])
    middle = parser.parse_args(["support", "--json", "queue", "--target", "a:1"])
    for args in (before, after, middle):
        assert (args.json, args.target, args.support_command) == (True, "a:1", "queue")
    listed = parser.parse_args(["merchants", "list", "--json"])
    assert (listed.command, listed.mc, listed.json) == ("merchants", "list", True)
    plain = parser.parse_args(["list", "merchants/x"])
    assert plain.json is False and plain.target == "127.0.0.1:50051"


def test_every_support_action_has_a_command() -> None:
    parser = ctl.build_parser()
    for argv in (
        ["accept", "merchants/m/invoices/i", "--reason", "r"],
        ["top-up", "merchants/m/invoices/i", "--reason", "r"],
        [
            "refund",
            "merchants/m/invoices/i",
            "--kind",
            "invoice_overpaid",
            "--scope",
            "excess",
            "--destination",
            "0x" + "1" * 40,
            "--reason",
            "r",
        ],
        ["review", "merchants/m/payouts/p", "--kind", "payout_stuck", "--reason", "r"],
        [
            "attach",
            "exceptions/" + "a" * 20,
            "--kind",
            "reconciliation_mismatch",
            "--tx-hash",
            "0x" + "b" * 64,
            "--reason",
            "r",
        ],
        ["redeliver", "merchants/m/webhookEndpoints/e", "--reason", "r"],
        ["ack", "merchants/m/invoices/i", "--kind", "invoice_paid_late", "--reason", "r"],
        ["approve", "supportActions/" + "c" * 20],
        ["audit", "--subject", "merchants/m/invoices/i"],
        ["queue", "--kind", "invoice_underpaid", "--kind", "webhook_endpoint_failing"],
    ):
        args = parser.parse_args(["support", *argv])
        assert args.support_command == argv[0]
    kinds = {
        k.removeprefix("ITEM_KIND_").lower() for k in support_pb2.ItemKind.DESCRIPTOR.values_by_name
    }
    assert set(ctl._KINDS) == kinds - {"unspecified"}


def test_an_api_key_in_an_argument_error_is_never_echoed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (
        ["support", "queue", TOKEN],
        ["support", "ack", "merchants/m/invoices/i", "--kind", TOKEN, "--reason", "r"],
        [TOKEN],
    ):
        with pytest.raises(SystemExit) as exited:
            ctl.build_parser().parse_args(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "error" in err and TOKEN not in err and "0123456789abcdef" not in err


def test_tables_by_default_and_json_lines_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    items = [
        support_pb2.SupportItem(
            kind=support_pb2.ITEM_KIND_INVOICE_UNDERPAID,
            subject="merchants/m/invoices/i",
            age_seconds=7_300,
            amount="40",
            actions=[support_pb2.ACTION_TYPE_ACCEPT_AS_PAID, support_pb2.ACTION_TYPE_ACKNOWLEDGE],
        ),
        support_pb2.SupportItem(
            kind=support_pb2.ITEM_KIND_WEBHOOK_ENDPOINT_FAILING,
            subject="merchants/m/webhookEndpoints/e",
            age_seconds=5,
        ),
    ]
    ctl.Out(as_json=False).rows(items, ctl.ITEM)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "SUBJECT", "AGE", "AMOUNT", "REVIEW", "ACTIONS", "DETAIL"]
    assert lines[1].split() == [
        "invoice_underpaid",
        "merchants/m/invoices/i",
        "2h",
        "40",
        "accept_as_paid,acknowledge",
    ]
    assert lines[2].split()[:3] == [
        "webhook_endpoint_failing",
        "merchants/m/webhookEndpoints/e",
        "5s",
    ]
    # Columns line up: every row's subject starts where the header's does.
    at = lines[0].index("SUBJECT")
    assert all(line[at:].startswith("merchants/") for line in lines[1:])
    ctl.Out(as_json=True).rows(items, ctl.ITEM)
    parsed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["kind"] for p in parsed] == [
        "ITEM_KIND_INVOICE_UNDERPAID",
        "ITEM_KIND_WEBHOOK_ENDPOINT_FAILING",
    ]


def test_redact_hides_every_api_key_in_a_text() -> None:
    text = f"refused {TOKEN} and {TOKEN.replace('A', 'b')}"
    assert "kassa_0123" not in ctl.redact(text)
    assert ctl.redact("nothing secret") == "nothing secret"


ETH = "eip155:1/slip44:60"
USDT = "eip155:1/erc20:0xdac17f958d2ee523a2206206994597c13d831ec7"


def test_statements_export_takes_an_account_or_a_merchant_in_all_or_some_assets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = ctl.build_parser()
    one = parser.parse_args(
        ["statements", "export", "--account", "shop", "--from", "2026-01-01", "--out", "s.csv"]
    )
    assert (one.sc, one.account, one.start, one.end, str(one.out)) == (
        "export",
        "shop",
        "2026-01-01",
        None,
        "s.csv",
    )
    assert ctl.statement_accounts(one, []) == ["shop"]
    # `--to` is the period's end, never an abbreviation of `--token`.
    until = parser.parse_args(["statements", "export", "--account", "a", "--to", "2026-02-01"])
    assert (until.end, until.token) == ("2026-02-01", None)
    # The merchant's accounts as the ledger lists them under its prefix (a
    # merchant whose id extends this one's is another merchant).
    listed = [
        (f"merchant:m1:{USDT}:receivable", USDT),
        (f"merchant:m1:{ETH}:available", ETH),
        (f"merchant:m1:{ETH}:incoming", ETH),
        (f"merchant:m10:{ETH}:available", ETH),
    ]
    many = parser.parse_args(
        ["statements", "export", "--merchant", "merchants/m1", "--asset", ETH, "--asset", USDT]
    )
    assert ctl.merchant_prefix(many) == "merchant:m1:"
    everything = [  # in id order
        f"merchant:m1:{USDT}:receivable",
        f"merchant:m1:{ETH}:available",
        f"merchant:m1:{ETH}:incoming",
    ]
    assert ctl.statement_accounts(many, listed) == everything
    # The merchant's name taken with or without its prefix; no --asset: every asset.
    bare = parser.parse_args(["statements", "export", "--merchant", "m1"])
    assert ctl.statement_accounts(bare, listed) == everything
    eth = parser.parse_args(["statements", "export", "--merchant", "m1", "--asset", ETH])
    assert ctl.statement_accounts(eth, listed) == everything[1:]
    for argv in (
        ["statements", "export"],
        ["statements", "export", "--account", "a", "--merchant", "m1"],
    ):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(argv)
        assert exited.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        ctl.main(["statements", "export", "--account", "a", "--asset", ETH, "--token", TOKEN])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--asset goes with --merchant" in err and TOKEN not in err
