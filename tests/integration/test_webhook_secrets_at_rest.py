"""Webhook signing secrets as a thief of the database sees them: sealed under a KEK kept
outside it. Deliveries still verify with the docs' recipe; the KEK rotates without a
lost delivery; a secret left in clear by an older version is sealed at the next start;
a keyring missing the KEK in use is refused at start, naming it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.webhooks.sealing import kek_of, new_kek_line
from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc, webhook_pb2, webhook_pb2_grpc
from localstack.postgres import PostgresCluster
from localstack.procs import ManagedProcess, console_script
from localstack.stack import CoreSetup
from tests.support.config import XPUB
from tests.support.waiting import db
from tests.support.webhooks import AcceptingReceiver, docs_recipe

TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
SCOPES = ("invoices:read", "invoices:write", "webhooks:read", "webhooks:write")
VERIFY = docs_recipe()


def make_core(run_dir: Path, dsn: str) -> CoreSetup:
    return CoreSetup(
        run_dir=run_dir,
        dsn=dsn,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        # No adapter runs here (API tests): invoices are taken on the unwatched chain.
        health={"invoices_need_chain": False},
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        webhooks={"poll_interval_s": 0.05, "allow_private_targets": True},
    )


def create_invoice(core: CoreSetup, merchant: str, order: str) -> None:
    with core.channel(core.merchant_token(merchant, SCOPES)) as channel:
        invoice_pb2_grpc.InvoiceServiceStub(channel).CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=f"merchants/{merchant}",
                merchant_order_id=order,
                asset=TOKEN,
                price=invoice_pb2.FiatAmount(amount="10.00", currency="USD"),
            )
        )


def create_endpoint(
    core: CoreSetup, merchant: str, url: str
) -> webhook_pb2.CreateWebhookEndpointResponse:
    with core.channel(core.merchant_token(merchant, SCOPES)) as channel:
        return webhook_pb2_grpc.WebhookServiceStub(channel).CreateWebhookEndpoint(
            webhook_pb2.CreateWebhookEndpointRequest(
                parent=f"merchants/{merchant}",
                webhook_endpoint=webhook_pb2.WebhookEndpoint(url=url),
            )
        )


@pytest.fixture
def receiver() -> Iterator[AcceptingReceiver]:
    r = AcceptingReceiver().start()
    yield r
    r.stop()


def verified(receiver: AcceptingReceiver, count: int, *secrets: str) -> None:
    """The count-th delivery verifies with each secret, by the docs' recipe."""
    delivery = receiver.wait_for(count)
    for secret in secrets:
        assert VERIFY(delivery.body, delivery.headers["Kassa-Signature"], secret)


def write_keyring(core: CoreSetup, *lines: str) -> None:
    core.kek_file.write_text("\n".join(lines) + "\n")
    core.kek_file.chmod(0o600)


def sealed_under(dsn: str) -> set[str]:
    rows = db(
        dsn,
        "SELECT secret, previous_secret, secret_sealed, previous_secret_sealed FROM webhook_endpoints",
    )
    assert all(r["secret"] is None and r["previous_secret"] is None for r in rows), "plaintext left"
    return {
        kek_of(bytes(r[c]))
        for r in rows
        for c in ("secret_sealed", "previous_secret_sealed")
        if r[c]
    }


def test_secrets_are_not_in_a_dump_deliveries_verify_and_the_kek_rotates(
    tmp_path: Path, postgres: PostgresCluster, receiver: AcceptingReceiver
) -> None:
    dsn = postgres.create_database("secrets_at_rest")
    core = make_core(tmp_path, dsn)
    old_line, new_line = new_kek_line("kek-2026-01"), new_kek_line("kek-2026-07")
    write_keyring(core, old_line)
    process: ManagedProcess = core.process().start()
    try:
        created = create_endpoint(core, "vault", receiver.url())
        first = created.secret
        with core.channel(core.merchant_token("vault", SCOPES)) as channel:
            second = (
                webhook_pb2_grpc.WebhookServiceStub(channel)
                .RotateWebhookSecret(
                    webhook_pb2.RotateWebhookSecretRequest(
                        name=created.webhook_endpoint.name, overlap_seconds=3600
                    )
                )
                .secret
            )
        create_invoice(core, "vault", "o-1")
        verified(receiver, 1, second, first)  # both sign during the overlap
        # The thief's view: a dump of the whole database.
        dump = postgres.dump("secrets_at_rest")
        assert "webhook_endpoints" in dump  # the table is there, its secrets are not
        for secret in (first, second):
            assert secret not in dump
            assert secret.removeprefix("whsec_") not in dump
        assert "whsec_" not in dump
        assert sealed_under(dsn) == {"kek-2026-01"}
    finally:
        assert process.stop() == 0
    log = (tmp_path / "core.log").read_text()
    assert first not in log and second not in log

    # Rotation, step 1: the new KEK first, the old one still there; the start re-seals.
    write_keyring(core, new_line, old_line)
    process = core.process().start()
    try:
        assert sealed_under(dsn) == {"kek-2026-07"}
    finally:
        assert process.stop() == 0
    # Step 2: the old KEK is dropped; deliveries still verify.
    write_keyring(core, new_line)
    process = core.process().start()
    try:
        create_invoice(core, "vault", "o-2")
        verified(receiver, 2, second)
    finally:
        assert process.stop() == 0

    # A keyring without the KEK in use: refused at start, naming the KEK, not the secret.
    write_keyring(core, new_kek_line("someone-elses"))
    result = subprocess.run(
        [console_script("kassa-core"), "--config", str(core.write_config()), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "KEK 'kek-2026-07', which the keyring does not hold" in result.stderr
    assert second not in result.stderr and first not in result.stderr


def test_a_secret_stored_in_clear_before_the_migration_is_sealed_at_the_next_start(
    tmp_path: Path, postgres: PostgresCluster, receiver: AcceptingReceiver
) -> None:
    dsn = postgres.create_database("secrets_legacy")
    core = make_core(tmp_path, dsn)
    process = core.process().start()
    try:
        endpoint = create_endpoint(core, "legacy", receiver.url()).webhook_endpoint
    finally:
        assert process.stop() == 0
    # What an endpoint written before migration 0009 looks like after it: the secret in clear.
    legacy = "whsec_" + "L" * 43
    endpoint_id = endpoint.name.rsplit("/", 1)[1]
    db(
        dsn,
        "UPDATE webhook_endpoints SET secret = $2, secret_sealed = NULL WHERE id = $1",
        endpoint_id,
        legacy,
    )
    assert legacy in postgres.dump("secrets_legacy")
    # The same step without serving, as an operator would run it after an upgrade.
    resealed = subprocess.run(
        [console_script("kassa-core"), "--config", str(core.write_config()), "reseal-secrets"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "sealed 1 plaintext" in resealed.stdout
    assert legacy not in postgres.dump("secrets_legacy")
    assert sealed_under(dsn) == {"dev-1"}
    process = core.process().start()
    try:
        create_invoice(core, "legacy", "o-legacy")
        verified(receiver, 1, legacy)
    finally:
        assert process.stop() == 0
