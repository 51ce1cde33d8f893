"""Backups, as docs/operations.md tells an operator to take and restore them.

PostgreSQL: `pg_dump -Fc` of the live stack's database (payments and ledger
postings in it, the core running), `pg_restore` into a fresh private cluster,
and `kassactl ledger check` passes on the restored copy; the same check fails
on a copy whose ledger was tampered with, so the passing check means something.
The signer: its SQLite state copied live with SQLite's online backup (what
`sqlite3 signer.sqlite3 ".backup …"` does) after it signed a payout, and
`kassa-signer audit verify` accepts the copy, anchored at the audit head read
from the live file just before the copy.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from kassa.core.v1 import payout_pb2
from localstack.fullstack import LocalStack
from localstack.paths import postgres_bin
from localstack.postgres import PostgresCluster
from localstack.procs import console_script
from tests.support.payouts import fresh_address, paid_invoice, wait_payout

FINAL = {payout_pb2.PAYOUT_STATE_CONFIRMED, payout_pb2.PAYOUT_STATE_FAILED}


def _paid_and_paid_out(stack: LocalStack, account: tuple[str, object, object]) -> None:
    """A payment in, and a payout signed, sent and confirmed."""
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)  # type: ignore[arg-type]
    payout = payouts.CreatePayout(  # type: ignore[attr-defined]
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=stack.token_asset, destination=fresh_address(), amount="1000000"
            ),
            request_id=f"backup-{fresh_address()[-8:]}",
        )
    ).payout
    final = wait_payout(stack, payouts, payout.name, FINAL)  # type: ignore[arg-type]
    assert final.state == payout_pb2.PAYOUT_STATE_CONFIRMED


@pytest.fixture
def fresh_cluster(run_dir: Path) -> Iterator[PostgresCluster]:
    # Under the session's run directory, which the postgres user can traverse.
    cluster = PostgresCluster(run_dir / "restore-postgres")
    cluster.start()
    yield cluster
    cluster.destroy()


def _kassactl_check(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("kassactl"), "ledger", "check", "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=120,
    )


COUNTS = {
    "payments": "SELECT count(*) FROM payments",
    "ledger_transfers": "SELECT count(*) FROM ledger_transfers",
}


async def _count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(COUNTS[table]))
    finally:
        await conn.close()


async def _tamper(dsn: str) -> None:
    """What a corrupted or hand-edited copy looks like: one plain posting's amount changed
    (the ledger's own triggers refuse that, so they are bypassed as a superuser)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE ledger_transfers SET amount = amount + 1"
                " WHERE id = (SELECT id FROM ledger_transfers WHERE flags = 0 ORDER BY id LIMIT 1)"
            )
    finally:
        await conn.close()


def test_a_live_dump_restores_into_a_fresh_cluster_and_the_ledger_checks(
    stack: LocalStack, account, fresh_cluster: PostgresCluster, run_dir: Path
) -> None:
    _paid_and_paid_out(stack, account)
    live_transfers = asyncio.run(_count(stack.dsn, "ledger_transfers"))
    assert live_transfers > 0
    dump = run_dir / "kassa.dump"
    subprocess.run(
        [str(postgres_bin("pg_dump")), "-Fc", "-d", stack.dsn, "-f", str(dump)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    restored = fresh_cluster.create_database("kassa_restored")
    subprocess.run(
        [
            str(postgres_bin("pg_restore")),
            "--no-owner",
            "--exit-on-error",
            "-d",
            restored,
            str(dump),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert asyncio.run(_count(restored, "payments")) >= 1
    assert (
        0
        < asyncio.run(_count(restored, "ledger_transfers"))
        <= asyncio.run(_count(stack.dsn, "ledger_transfers"))
    )

    checked = _kassactl_check(restored)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ledger check: ok"), checked.stdout

    asyncio.run(_tamper(restored))
    broken = _kassactl_check(restored)
    assert broken.returncode != 0, broken.stdout
    assert "ledger check failed" in broken.stderr


def test_the_signer_state_copied_live_verifies_against_its_audit_head(
    stack: LocalStack, account, tmp_path: Path
) -> None:
    _paid_and_paid_out(stack, account)
    state = stack.run_dir / "signer-state" / "signer.sqlite3"
    copy = tmp_path / "signer-backup.sqlite3"
    source = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        # The anchor an operator keeps off the host (the signer also logs it at start and
        # stop): the newest record at the time of the backup.
        seq, head = source.execute(
            "SELECT seq, record_hash FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        source.backup(target)  # SQLite's online backup: consistent while the signer writes
    finally:
        target.close()
        source.close()
    assert seq >= 1, "the payout was signed: its audit record is in the state"
    verified = subprocess.run(
        [console_script("kassa-signer"), "audit", "verify", str(copy), "--head", head],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
