"""scripts/demo: the whole stack on this machine and one payment end to end.

Starts PostgreSQL, a SoftHSM2 token, anvil and a test token; runs the
signer's key ceremony; starts signer, EVM adapter and core as separate
processes; then, as a client, creates an invoice for 25.00 USD payable in
the token, pays it from a funded account and prints every event the core
streams until the invoice is paid. Then it shuts everything down.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from core.clients import ApiTls, authed_channel
from kassa.core.v1 import (
    event_pb2,
    event_pb2_grpc,
    invoice_pb2,
    invoice_pb2_grpc,
    payout_pb2,
    payout_pb2_grpc,
)
from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from localstack.fullstack import MERCHANT, LocalStack
from localstack.paths import REPO, postgres_bin
from localstack.procs import console_script
from localstack.stack import MERCHANT_SCOPES, CoreSetup

_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:7.2f}s] {text}", flush=True)


def clean_previous_run(run_dir: Path) -> None:
    """Stops whatever a crashed earlier run left behind, then starts afresh."""
    pids = run_dir / "pids"
    if pids.exists():
        for line in pids.read_text().split():
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.killpg(int(line), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(line), signal.SIGKILL)
    data = run_dir / "postgres" / "data"
    if (data / "postmaster.pid").exists():
        runner = ["runuser", "-u", "kassa-pg", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*runner, str(postgres_bin("pg_ctl")), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
    shutil.rmtree(run_dir, ignore_errors=True)


def events(target: str, tls: ApiTls, token: str, after: int) -> Iterator[event_pb2.Event]:
    """The merchant's events after `after`, reconnecting while the core restarts."""
    while True:
        try:
            with authed_channel(target, token, tls) as channel:
                stub = event_pb2_grpc.EventServiceStub(channel)
                request = event_pb2.StreamEventsRequest(parent=MERCHANT, after_sequence=after)
                for response in stub.StreamEvents(request, wait_for_ready=True):
                    after = response.event.sequence
                    yield response.event
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise
            say(f"  (event stream interrupted; resuming after sequence {after})")
            time.sleep(0.2)


def run(stack: LocalStack, kill_core: bool) -> None:
    say(f"run directory {stack.run_dir}")
    stack.start_infrastructure()
    assert stack.postgres is not None
    say(f"PostgreSQL {stack.dsn} (server running as an unprivileged user)")
    say(f"SoftHSM2 token '{stack.hsm.label}' in {stack.hsm.tokens_dir}")
    say(f"anvil chain {stack.chain} at {stack.anvil.ws_url}, block time {stack.block_time_s}s")
    say(f"test token TUSD (6 decimals) deployed at {stack.token.address}")
    xpub = stack.key_ceremony()
    say(f"signer key ceremony: HD seed encrypted under a token AES key; account xpub {xpub[:24]}…")
    stack.start_signer()
    with stack.signer_channel() as channel:  # mTLS, as the core (CN=kassa-core)
        keys = (
            signer_pb2_grpc.SignerServiceStub(channel).ListKeys(signer_pb2.ListKeysRequest()).keys
        )
    for key in keys:
        say(f"  signer key {key.key_id}: {key.address or key.derivation_path}")
    stack.start_adapter()
    say(
        f"EVM adapter serving {stack.chain} on 127.0.0.1:{stack.primary.adapter_port} over "
        f"mutual TLS as {stack.chain.replace(':', '-')}.adapter.kassa; it serves CN=kassa-core only"
    )
    applied = stack.migrate()
    say(f"migrations: {applied.replace(chr(10), ', ')}")
    stack.start_core()
    core = stack.core_setup()
    say(
        f"core serving on {core.target} over TLS (certificate {core.certs}/core-api.pem); "
        "links: core->adapter mTLS, core->signer mTLS, webhook secrets sealed (AES-GCM, KEK "
        f"{core.kek_file})"
    )
    say(
        f"reach the API: kassactl --target {core.target} --ca-file {core.ca_file} "
        f"--token $KASSA_TOKEN list {MERCHANT}"
    )
    say(
        f"  or: grpcurl -cacert {core.ca_file} -H 'authorization: Bearer $KASSA_TOKEN' "
        f"{core.target} list"
    )
    core.admin_token()
    say(
        "platform API key bootstrapped (kassactl bootstrap-key); creating merchant 'demo' and its key"
    )
    token = core.merchant_token(MERCHANT.removeprefix("merchants/"))

    with core.channel(token) as channel:
        invoices = invoice_pb2_grpc.InvoiceServiceStub(channel)
        invoice = invoices.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=MERCHANT,
                request_id=f"demo-{int(time.time())}",
                merchant_order_id="order-1001",
                asset=stack.token_asset,
                price=invoice_pb2.FiatAmount(amount="25.00", currency="USD"),
            )
        ).invoice
    say(
        f"created {invoice.name}: {invoice.price.amount} {invoice.price.currency} = "
        f"{int(invoice.amount_due) / 10**invoice.asset_decimals} TUSD ({invoice.amount_due} base units) "
        f"at rate {invoice.quote.rate} ({invoice.quote.source}); pay to {invoice.deposit_address}; "
        f"{invoice.confirmations_required} confirmations"
    )

    paid_at = None
    for event in events(core.target, core.api_tls(), token, 0):
        if event.invoice.name != invoice.name:
            continue
        state = (
            invoice_pb2.InvoiceState.Name(event.invoice.state)
            .removeprefix("INVOICE_STATE_")
            .lower()
        )
        since = f" (+{time.monotonic() - paid_at:.2f}s after payment)" if paid_at else ""
        say(
            f"event #{event.sequence} {event.type:<20} state={state} received={event.invoice.amount_received}"
            f" pending={event.invoice.amount_pending}{since}"
        )
        if event.type == "invoice.created":
            tx = stack.token.transfer(
                stack.customer, invoice.deposit_address, int(invoice.amount_due)
            )
            paid_at = time.monotonic()
            say(f"customer {stack.customer} sent {invoice.amount_due} base units: tx {tx}")
        elif event.type == "invoice.confirming" and kill_core:
            kill_core = False
            stack.processes["core"].kill()
            say("core killed (SIGKILL) during confirmations; starting it again")
            stack.start_core()
        elif event.type == "invoice.paid":
            break

    # What the demo printed at start, done: kassactl over TLS, checking the core with the CA file.
    listed = subprocess.run(
        [
            console_script("kassactl"),
            "--target",
            core.target,
            "--ca-file",
            str(core.ca_file),
            "list",
            MERCHANT,
            "--json",
        ],
        env={**os.environ, "KASSA_TOKEN": token},
        capture_output=True,
        text=True,
        check=True,
    )
    say(
        f"kassactl --ca-file {core.ca_file} list {MERCHANT}: "
        f"{len(listed.stdout.splitlines())} invoice(s) over TLS"
    )
    with core.channel(token) as channel:
        final = (
            invoice_pb2_grpc.InvoiceServiceStub(channel)
            .GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name))
            .invoice
        )
    for p in final.payments:
        say(
            f"payment {p.tx_hash} block {p.block_height} confirmations {p.confirmations} amount {p.amount}"
        )
    assert final.state == invoice_pb2.INVOICE_STATE_PAID
    assert final.amount_received == invoice.amount_due, "credited exactly once"
    say(f"{invoice.name} is PAID: received {final.amount_received} of {final.amount_due}")
    refund_overpaid(stack, core)


def refund_overpaid(stack: LocalStack, core: CoreSetup) -> None:
    """An overpaid invoice's excess goes back to the customer: core → signer → chain."""
    token = core.merchant_token(
        MERCHANT.removeprefix("merchants/"),
        (*MERCHANT_SCOPES, "payouts:read", "payouts:write"),
    )
    with core.channel(token) as channel:
        invoices = invoice_pb2_grpc.InvoiceServiceStub(channel)
        payouts = payout_pb2_grpc.PayoutServiceStub(channel)
        invoice = invoices.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=MERCHANT,
                merchant_order_id="order-1002",
                asset=stack.token_asset,
                price=invoice_pb2.FiatAmount(amount="10.00", currency="USD"),
            )
        ).invoice
        excess = 2_500_000
        tx = stack.token.transfer(
            stack.customer, invoice.deposit_address, int(invoice.amount_due) + excess
        )
        say(f"created {invoice.name} for {invoice.amount_due}; customer overpays by {excess}: {tx}")
        t0 = time.monotonic()
        while True:
            got = invoices.GetInvoice(invoice_pb2.GetInvoiceRequest(name=invoice.name)).invoice
            if got.state == invoice_pb2.INVOICE_STATE_OVERPAID:
                break
            time.sleep(0.2)
        say(
            f"{invoice.name} is OVERPAID (+{time.monotonic() - t0:.2f}s): received {got.amount_received}"
        )
        before = stack.token.balance_of(stack.customer)
        t1 = time.monotonic()
        refund = payouts.CreateRefund(
            payout_pb2.CreateRefundRequest(
                invoice=invoice.name,
                destination=stack.customer,
                amount=str(excess),
                reference="excess of order-1002",
                request_id="demo-refund-1002",
            )
        ).payout
        say(f"refund {refund.name} of {refund.amount} to {refund.destination}: held on the ledger")
        seen = refund.state
        while refund.state not in (
            payout_pb2.PAYOUT_STATE_CONFIRMED,
            payout_pb2.PAYOUT_STATE_FAILED,
        ):
            time.sleep(0.2)
            refund = payouts.GetPayout(payout_pb2.GetPayoutRequest(name=refund.name)).payout
            if refund.state != seen:
                seen = refund.state
                state = payout_pb2.PayoutState.Name(seen).removeprefix("PAYOUT_STATE_").lower()
                say(
                    f"  refund {state:<10} tx {refund.tx_hash or '-'} (+{time.monotonic() - t1:.2f}s)"
                )
    received = stack.token.balance_of(stack.customer) - before
    assert refund.state == payout_pb2.PAYOUT_STATE_CONFIRMED, refund.failure_reason
    assert received == excess, f"customer received {received}, expected {excess}"
    say(
        f"customer {stack.customer} got the excess back: +{received} base units, nonce "
        f"{refund.nonce}, network fee {refund.network_fee} wei (+{time.monotonic() - t1:.2f}s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run-dir", type=Path, default=REPO / ".run" / "demo")
    parser.add_argument(
        "--kill-core-while-confirming",
        action="store_true",
        help="SIGKILL the core after invoice.confirming and restart it",
    )
    args = parser.parse_args(argv)
    clean_previous_run(args.run_dir)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the stack is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = LocalStack(args.run_dir)
    try:
        run(stack, args.kill_core_while_confirming)
    except BaseException as exc:
        say(f"demo failed: {exc!r}; logs are in {args.run_dir}")
        stack.stop()
        raise
    codes = stack.stop()
    say("shut down: " + ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    unclean = {n: c for n, c in codes.items() if c != 0}
    if unclean:
        say(f"processes did not exit cleanly: {unclean}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
