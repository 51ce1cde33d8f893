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
from kassa.core.v1 import webhook_pb2
from localstack.postgres import PostgresCluster
from localstack.procs import ManagedProcess, console_script
from localstack.stack import CoreSetup
from tests.integration.test_webhooks import (
    SCOPES,
    Merchant,
    Receiver,
    db,
    make_core,
    wait_until,
)
from tests.unit.test_webhook_recipe import VERIFY


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def verified(receiver: Receiver, count: int, *secrets: str) -> None:
    """The count-th accepted delivery verifies with each secret, by the docs' recipe."""
    wait_until(lambda: len(receiver.accepted()) >= count, what=f"delivery {count}")
    request = receiver.accepted()[count - 1]
    for secret in secrets:
        assert VERIFY(request.body, request.headers["Kassa-Signature"], secret)


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
    tmp_path: Path, postgres: PostgresCluster, receiver: Receiver
) -> None:
    dsn = postgres.create_database("secrets_at_rest")
    core = make_core(tmp_path, dsn)
    old_line, new_line = new_kek_line("kek-2026-01"), new_kek_line("kek-2026-07")
    write_keyring(core, old_line)
    process: ManagedProcess = core.process().start()
    try:
        with core.channel(core.merchant_token("vault", SCOPES)) as channel:
            merchant = Merchant("vault", channel)
            created = merchant.endpoint(receiver.url())
            first = created.secret
            second = merchant.hooks.RotateWebhookSecret(
                webhook_pb2.RotateWebhookSecretRequest(
                    name=created.webhook_endpoint.name, overlap_seconds=3600
                )
            ).secret
            merchant.invoice("o-1")
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
        with core.channel(core.merchant_token("vault", SCOPES)) as channel:
            Merchant("vault", channel).invoice("o-2")
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
    tmp_path: Path, postgres: PostgresCluster, receiver: Receiver
) -> None:
    dsn = postgres.create_database("secrets_legacy")
    core = make_core(tmp_path, dsn)
    process = core.process().start()
    try:
        with core.channel(core.merchant_token("legacy", SCOPES)) as channel:
            endpoint = Merchant("legacy", channel).endpoint(receiver.url()).webhook_endpoint
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
        with core.channel(core.merchant_token("legacy", SCOPES)) as channel:
            Merchant("legacy", channel).invoice("o-legacy")
        verified(receiver, 1, legacy)
    finally:
        assert process.stop() == 0
