"""Every link as its attacker sees it: real core and adapter processes, real certificates.

- an on-path client or a stranger without TLS, or with a certificate from another CA,
  gets nothing from the core's API;
- a process that is not the configured adapter (a certificate of the right CA with
  another identity, or the right name from a foreign CA) feeds the core no block: its
  payments never reach the ledger, while the same fake with the right certificate does
  (so the refusal is the certificate's doing, nothing else);
- a caller that is not the core gets nothing from the adapter, Broadcast included;
- the database password lives in a private file; a group-readable one is refused.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from core.clients import ApiTls, api_channel, authed_channel
from kassa.chain.v1 import adapter_pb2 as chain_pb
from kassa.chain.v1 import adapter_pb2_grpc as chain_grpc
from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
from localstack import devcerts
from localstack.anvil import Anvil
from localstack.ports import free_port
from localstack.postgres import PostgresCluster
from localstack.procs import ManagedProcess, console_script
from localstack.stack import CoreSetup
from tests.support.config import XPUB
from tests.support.evm import certs, core_channel, start_adapter

CHAIN = "eip155:31337"
TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"


def core_setup(run_dir: Path, dsn: str, **kw: object) -> CoreSetup:
    return CoreSetup(
        run_dir=run_dir,
        dsn=dsn,
        account_xpub=XPUB,
        chains=[{"id": CHAIN, "adapter": kw.pop("adapter", "127.0.0.1:9"), "confirmations": 1}],  # type: ignore[dict-item]
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        # No adapter follows the chain in most of these tests: invoices are taken anyway.
        health={"invoices_need_chain": False},
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates of every party, with the right names, from a CA Kassa does not trust."""
    out = tmp_path_factory.mktemp("foreign-ca")
    devcerts.make(out, adapters=[CHAIN], ca_name="Someone else's CA")
    return out


@pytest.fixture(scope="module")
def mtls_core(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[CoreSetup]:
    """A core whose API asks for a client certificate in addition to an API key."""
    setup = core_setup(
        tmp_path_factory.mktemp("mtls-core"),
        postgres.create_database("mtls_core"),
        client_certificates=True,
    )
    process = setup.process().start()
    yield setup
    assert process.stop() == 0


def health(channel: grpc.Channel) -> int:
    # The InvoiceService's entry: "" also needs every chain followed, and no adapter runs here.
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="kassa.core.v1.InvoiceService")
    return int(stub.Check(request, timeout=5).status)


def refused_code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code()  # type: ignore[attr-defined,no-any-return]


# --- the core's API ---------------------------------------------------------------------


def test_a_plaintext_client_is_refused_by_the_core_api(mtls_core: CoreSetup) -> None:
    token = mtls_core.admin_token()
    with authed_channel(mtls_core.target, token, None) as plain:
        stub = invoice_pb2_grpc.InvoiceServiceStub(plain)
        request = invoice_pb2.ListInvoicesRequest(parent="merchants/anyone")
        assert refused_code(lambda: stub.ListInvoices(request, timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE
        )
        assert refused_code(lambda: health(plain)) == grpc.StatusCode.UNAVAILABLE
    # The same key over TLS with the client certificate is served.
    with authed_channel(mtls_core.target, token, mtls_core.api_tls()) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        invoice_pb2_grpc.InvoiceServiceStub(channel).ListInvoices(
            invoice_pb2.ListInvoicesRequest(parent="merchants/nobody-yet"), timeout=5
        )


def test_client_certificates_from_another_ca_or_none_are_refused_and_keys_still_count(
    mtls_core: CoreSetup, foreign: Path
) -> None:
    token = mtls_core.admin_token()
    ours = mtls_core.ca_file
    attempts = {
        "no client certificate": ApiTls.from_files(ours),
        "a client certificate of another CA": ApiTls.from_files(
            ours, cert_file=foreign / "client.pem", key_file=foreign / "client.key"
        ),
    }
    for what, tls in attempts.items():
        with authed_channel(mtls_core.target, token, tls) as channel:
            code = refused_code(lambda channel=channel: health(channel))
            assert code == grpc.StatusCode.UNAVAILABLE, what
    # The right certificate without an API key: the key is still required.
    with api_channel(mtls_core.target, mtls_core.api_tls()) as bare:
        stub = invoice_pb2_grpc.InvoiceServiceStub(bare)
        request = invoice_pb2.ListInvoicesRequest(parent="merchants/anyone")
        assert refused_code(lambda: stub.ListInvoices(request, timeout=5)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )


def test_a_client_does_not_talk_to_a_core_its_ca_did_not_certify(
    mtls_core: CoreSetup, foreign: Path
) -> None:
    """The on-path attacker posing as the core: the client checks the server's certificate."""
    tls = ApiTls.from_files(
        foreign / "ca.pem",
        cert_file=mtls_core.certs / "client.pem",  # type: ignore[operator]
        key_file=mtls_core.certs / "client.key",  # type: ignore[operator]
    )
    with authed_channel(mtls_core.target, mtls_core.admin_token(), tls) as channel:
        assert refused_code(lambda: health(channel)) == grpc.StatusCode.UNAVAILABLE


# --- the core's links to its adapters ------------------------------------------------------


class FakeAdapter(chain_grpc.ChainAdapterServiceServicer):
    """A gRPC server that says it is the chain's adapter and streams one block paying `to`."""

    def __init__(self, to: str, amount: str) -> None:
        self.to = to
        self.amount = amount
        self.streams = 0

    def StreamBlocks(
        self, request: object, context: object
    ) -> Iterator[chain_pb.StreamBlocksResponse]:
        self.streams += 1
        now = Timestamp()
        now.GetCurrentTime()
        block = chain_pb.Block(
            height=100,
            hash="0x" + "ab" * 32,
            parent_hash="0x" + "aa" * 32,
            time=now,
            transfers=[
                chain_pb.Transfer(
                    tx_hash="0x" + "cd" * 32,
                    index=0,
                    asset=TOKEN,
                    from_address="0x" + "11" * 20,
                    to_address=self.to,
                    amount=self.amount,
                    success=True,
                )
            ],
        )
        yield chain_pb.StreamBlocksResponse(event=chain_pb.BlockEvent(block=block))
        head = chain_pb.Head(
            head=chain_pb.BlockCursor(height=100, hash=block.hash), observe_time=now
        )
        while context.is_active():  # type: ignore[attr-defined]
            yield chain_pb.StreamBlocksResponse(event=chain_pb.BlockEvent(head=head))
            time.sleep(0.2)


def serve_fake(port: int, fake: FakeAdapter, cert_dir: Path, party: str) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    chain_grpc.add_ChainAdapterServiceServicer_to_server(fake, server)
    credentials = grpc.ssl_server_credentials(
        [((cert_dir / f"{party}.key").read_bytes(), (cert_dir / f"{party}.pem").read_bytes())]
    )
    server.add_secure_port(f"127.0.0.1:{port}", credentials)
    server.start()
    return server


def payments_and_cursor(dsn: str) -> tuple[int, int]:
    async def query() -> tuple[int, int]:
        conn = await asyncpg.connect(dsn)
        try:
            payments = await conn.fetchval("SELECT count(*) FROM payments")
            cursors = await conn.fetchval("SELECT count(*) FROM chain_cursors")
            return int(payments), int(cursors)
        finally:
            await conn.close()

    return asyncio.run(query())


def test_a_fake_adapter_feeds_no_block_to_the_ledger_but_the_configured_one_does(
    tmp_path: Path, postgres: PostgresCluster, foreign: Path
) -> None:
    port = free_port()
    # Our CA also certifies another chain's adapter (eip155:1): a legitimate process, wrong role.
    devcerts.make(tmp_path / "certs", adapters=[CHAIN, "eip155:1"])
    setup = core_setup(
        tmp_path, postgres.create_database("fake_adapter"), adapter=f"127.0.0.1:{port}"
    )
    process = setup.process().start()
    try:
        with setup.channel(setup.merchant_token("victim")) as channel:
            invoice = (
                invoice_pb2_grpc.InvoiceServiceStub(channel)
                .CreateInvoice(
                    invoice_pb2.CreateInvoiceRequest(
                        parent="merchants/victim",
                        merchant_order_id="o-1",
                        asset=TOKEN,
                        price=invoice_pb2.FiatAmount(amount="10.00", currency="USD"),
                    )
                )
                .invoice
            )
        ours = setup.certs
        assert ours is not None
        impostors = {
            # A real adapter certificate of our CA, but another chain's identity.
            "right CA, wrong identity": (ours, "adapter-eip155-1"),
            # The right name, from a CA the core does not trust.
            "foreign CA": (foreign, "adapter-eip155-31337"),
            # Our CA's certificate of another process altogether (SAN localhost).
            "the signer's certificate": (ours, "signer"),
        }
        for what, (cert_dir, party) in impostors.items():
            fake = FakeAdapter(invoice.deposit_address, invoice.amount_due)
            server = serve_fake(port, fake, cert_dir, party)
            time.sleep(4 * 1.0 + 1)  # several reconnects of the follower (backoff 1 s)
            server.stop(grace=None).wait()
            assert fake.streams == 0, f"{what}: the core opened a stream"
            assert payments_and_cursor(setup.dsn) == (0, 0), f"{what}: a block was applied"
        log = (tmp_path / "core.log").read_text()
        assert "block stream ended" in log and "UNAVAILABLE" in log
        # Refused at the handshake: the wrong identity by name, the foreign CA by chain.
        assert "Hostname Verification Check failed" in log
        assert "CERTIFICATE_VERIFY_FAILED" in log
        # The control: the same fake with the configured adapter's certificate is believed.
        fake = FakeAdapter(invoice.deposit_address, invoice.amount_due)
        server = serve_fake(port, fake, ours, "adapter-eip155-31337")
        try:
            deadline = time.monotonic() + 30
            while payments_and_cursor(setup.dsn) != (1, 1):
                assert time.monotonic() < deadline, "the configured adapter's block was not applied"
                time.sleep(0.2)
            assert fake.streams >= 1
        finally:
            server.stop(grace=None).wait()
    finally:
        assert process.stop() == 0


# --- the adapter's callers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter(
    anvil: Anvil, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, int]]:
    process, port = start_adapter(tmp_path_factory.mktemp("evm-callers"), [anvil.ws_url], [])
    yield process, port
    assert process.stop() == 0


@pytest.fixture(scope="module")
def adapter_port(adapter: tuple[ManagedProcess, int]) -> int:
    return adapter[1]


def error_reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "refusals carry a google.rpc.Status"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return str(info.reason)


async def test_a_caller_that_is_not_the_core_is_refused_by_the_adapter(
    adapter: tuple[ManagedProcess, int], foreign: Path
) -> None:
    process, adapter_port = adapter
    calls = {
        "GetChainInfo": lambda s: s.GetChainInfo(chain_pb.GetChainInfoRequest(), timeout=5),
        "BroadcastTransaction": lambda s: s.BroadcastTransaction(
            chain_pb.BroadcastTransactionRequest(raw_transaction=b"\x02\xf8"), timeout=5
        ),
        "GetAccount": lambda s: s.GetAccount(
            chain_pb.GetAccountRequest(address="0x" + "11" * 20), timeout=5
        ),
        "EstimateFees": lambda s: s.EstimateFees(chain_pb.EstimateFeesRequest(), timeout=5),
        "EstimateTransferGas": lambda s: s.EstimateTransferGas(
            chain_pb.EstimateTransferGasRequest(), timeout=5
        ),
    }
    # Another holder of a certificate of the same CA (an API client): refused, by name.
    async with core_channel(adapter_port, party="client") as channel:
        stub = chain_grpc.ChainAdapterServiceStub(channel)
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(stub)
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
            assert error_reason(raised.value) == "CALLER_NOT_ALLOWED", name
            assert "CN=kassa-client" in (raised.value.details() or ""), name
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub.StreamBlocks(chain_pb.StreamBlocksRequest(), timeout=5):
                pass
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The core's name on a certificate of a foreign CA, and no certificate at all: no handshake.
    ca = (certs() / "ca.pem").read_bytes()
    strangers = {
        "foreign CA": grpc.ssl_channel_credentials(
            ca, (foreign / "core.key").read_bytes(), (foreign / "core.pem").read_bytes()
        ),
        "no client certificate": grpc.ssl_channel_credentials(ca),
    }
    options = [("grpc.ssl_target_name_override", devcerts.adapter_name(CHAIN))]
    for what, credentials in strangers.items():
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{adapter_port}", credentials, options=options
        ) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await chain_grpc.ChainAdapterServiceStub(channel).GetChainInfo(
                    chain_pb.GetChainInfoRequest(), timeout=5
                )
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, what
    async with grpc.aio.insecure_channel(f"127.0.0.1:{adapter_port}") as plain:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await chain_grpc.ChainAdapterServiceStub(plain).GetChainInfo(
                chain_pb.GetChainInfoRequest(), timeout=5
            )
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    # The core itself is served.
    async with core_channel(adapter_port) as channel:
        info = await chain_grpc.ChainAdapterServiceStub(channel).GetChainInfo(
            chain_pb.GetChainInfoRequest(), timeout=5
        )
    assert info.chain == CHAIN
    # The failed handshakes left the adapter's log one JSON object per line (gRPC's
    # own plain-text INFO lines are off).
    log = process.log_path.read_text().splitlines()
    assert [line for line in log if line.strip() and not line.startswith("{")] == []


# --- secrets in files ----------------------------------------------------------------------


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_core_whose_database_password_lives_in_a_file_starts(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    password = "correct horse:battery@staple"
    dsn = postgres.create_password_database("pw_core", "kassa_pw", password)
    password_file = private_file(tmp_path / "db-password", password + "\n")
    setup = core_setup(tmp_path, dsn, db_password_file=password_file)
    config = setup.write_config()
    assert password not in config.read_text()
    process = setup.process().start()
    try:
        with setup.bare_channel() as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert process.stop() == 0
    # The control: PostgreSQL does check that password (a wrong one does not start).
    private_file(password_file, "wrong\n")
    result = subprocess.run(
        [console_script("kassa-core"), "--config", str(setup.write_config()), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "password authentication failed" in result.stderr
    assert "wrong" not in result.stderr.replace("password authentication failed", "")


def test_a_group_readable_secret_file_is_refused_with_a_clear_message(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    password_file = private_file(tmp_path / "db-password", "hunter2\n", 0o640)
    setup = core_setup(
        tmp_path,
        postgres.create_password_database("pw_refused", "kassa_pw2", "hunter2"),
        db_password_file=password_file,
    )
    result = subprocess.run(
        [console_script("kassa-core"), "--config", str(setup.write_config()), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "database.password_file" in result.stderr
    assert "readable by group or others (mode 0640)" in result.stderr
    assert f"chmod 600 {password_file}" in result.stderr
    assert "hunter2" not in result.stderr
    # The TLS key is a secret file too.
    key = setup.certs / "core-api.key"  # type: ignore[operator]
    key.chmod(0o644)
    try:
        private_file(password_file, "hunter2\n")
        result = subprocess.run(
            [console_script("kassa-core"), "--config", str(setup.write_config()), "serve"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        key.chmod(0o600)
    assert result.returncode == 2
    assert "server.key_file" in result.stderr and "readable by group or others" in result.stderr


def test_plaintext_is_a_development_flag_that_warns(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    setup = core_setup(tmp_path, postgres.create_database("plain_dev"))
    tables = setup.tls_tables()
    config = setup.write_config()
    text = config.read_text()
    for key in ("cert_file", "key_file"):
        text = text.replace(f'{key} = "{tables["server"][key]}"\n', "", 1)
    text = text.replace("[server]\n", "[server]\ndev_plaintext = true\n", 1)
    config.write_text(text)
    process = subprocess.Popen(
        [console_script("kassa-core"), "--config", str(config), "serve", "--migrate"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the plaintext core did not serve"
            try:
                with api_channel(setup.target, None) as channel:
                    if health(channel) == health_pb2.HealthCheckResponse.SERVING:
                        break
            except grpc.RpcError:
                time.sleep(0.2)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "PLAINTEXT" in stderr and "dev_plaintext" in stderr


# --- kassactl ----------------------------------------------------------------------------


def kassactl(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("kassactl"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KASSA_TOKEN": token},
    )


def test_kassactl_speaks_tls_checks_the_core_and_shows_a_client_certificate(
    mtls_core: CoreSetup, foreign: Path
) -> None:
    certs_dir = mtls_core.certs
    assert certs_dir is not None
    token = mtls_core.admin_token()
    client = (
        "--client-cert",
        str(certs_dir / "client.pem"),
        "--client-key",
        str(certs_dir / "client.key"),
    )
    target = ("--target", mtls_core.target)
    ca = ("--ca-file", str(mtls_core.ca_file))
    listing = ("list", "merchants/nobody")
    ok = kassactl(*target, *ca, *client, *listing, token=token)
    assert ok.returncode == 0, ok.stderr
    # The name the certificate must carry, when the target is an address.
    named = kassactl(*target, *ca, "--server-name", "localhost", *client, *listing, token=token)
    assert named.returncode == 0, named.stderr
    refused = {
        "another name": (*target, *ca, "--server-name", "core.elsewhere", *client),
        "no client certificate": (*target, *ca),
        "plaintext": (*target, "--plaintext"),
        "a CA that did not certify the core": (
            *target,
            "--ca-file",
            str(foreign / "ca.pem"),
            *client,
        ),
    }
    for what, args in refused.items():
        result = kassactl(*args, *listing, token=token)
        assert result.returncode == 1, what
        assert "UNAVAILABLE" in result.stderr, what


def test_kassactl_reads_the_dsn_from_a_private_file(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    dsn_file = private_file(tmp_path / "dsn", postgres.create_database("ctl_dsn") + "\n", 0o640)
    refused = kassactl("ledger", "check", "--dsn-file", str(dsn_file))
    assert refused.returncode == 2
    assert "readable by group or others" in refused.stderr
    dsn_file.chmod(0o600)
    migrated = kassactl("migrate", "--dsn-file", str(dsn_file))
    assert migrated.returncode == 0, migrated.stderr
    checked = kassactl("ledger", "check", "--dsn-file", str(dsn_file))
    assert checked.returncode == 0, checked.stderr
    assert "ledger check: ok" in checked.stdout
