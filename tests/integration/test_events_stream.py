"""StreamEvents against a real core: resume across a restart, several
consumers at once, and a consumer that stops reading is cut off (with the
sequence it reached) without holding the others up."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import asyncpg
import grpc
import pytest

from core.clients import api_channel
from core.events.outbox import NewEvent, append
from kassa.core.v1 import event_pb2, event_pb2_grpc, invoice_pb2, invoice_pb2_grpc
from localstack.stack import CoreSetup
from tests.support.config import XPUB
from tests.support.grpc_errors import rich
from tests.support.metrics import value, wait_for

TOKEN = "eip155:31337/erc20:0x00000000000000000000000000000000000000aa"
STALL_S = 1.0


@pytest.fixture
def core(tmp_path: Path, fresh_dsn: str) -> CoreSetup:
    return CoreSetup(
        run_dir=tmp_path,
        dsn=fresh_dsn,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        # No adapter runs here (API tests): invoices are taken on the unwatched chain.
        health={"invoices_need_chain": False},
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        events={"stream_buffer_events": 20, "stream_stall_timeout_s": STALL_S},
    )


def create(channel: grpc.Channel, merchant: str, n: int, prefix: str) -> list[str]:
    stub = invoice_pb2_grpc.InvoiceServiceStub(channel)
    return [
        stub.CreateInvoice(
            invoice_pb2.CreateInvoiceRequest(
                parent=f"merchants/{merchant}",
                merchant_order_id=f"{prefix}{i}",
                asset=TOKEN,
                price=invoice_pb2.FiatAmount(amount="1.00", currency="USD"),
            )
        ).invoice.name
        for i in range(n)
    ]


def read(channel: grpc.Channel, after: int, n: int, merchant: str = "") -> list[event_pb2.Event]:
    stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
        event_pb2.StreamEventsRequest(
            parent=f"merchants/{merchant}" if merchant else "", after_sequence=after
        ),
        timeout=20,
    )
    got = [next(stream).event for _ in range(n)]
    stream.cancel()
    return got


def test_stream_resumes_exactly_after_the_cursor_across_a_core_restart(core: CoreSetup) -> None:
    process = core.process().start()
    with core.channel(core.merchant_token("resume")) as channel:
        before = create(channel, "resume", 5, "a")
        first = read(channel, 0, 3, "resume")
        cursor = first[-1].sequence
    process.kill()
    process = core.process().start()
    try:
        with core.channel(core.merchant_token("resume")) as channel:
            after = create(channel, "resume", 3, "b")
            rest = read(channel, cursor, 5, "resume")
        assert rest[0].sequence == cursor + 1
        names = [e.invoice.name for e in first + rest]
        assert names == before + after
        sequences = [e.sequence for e in first + rest]
        assert sequences == list(range(sequences[0], sequences[0] + 8))
    finally:
        assert process.stop() == 0


def big_events(dsn: str, merchant: str, n: int, size: int) -> None:
    """Writes n events of about `size` bytes straight into the outbox (the
    same append the state machine uses), to fill transport windows fast."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                events = []
                for i in range(n):
                    invoice = invoice_pb2.Invoice(
                        name=f"merchants/{merchant}/invoices/big{i}", metadata={"pad": "x" * size}
                    )
                    events.append(
                        NewEvent(
                            "invoice.created",
                            merchant,
                            invoice.name,
                            invoice.SerializeToString(deterministic=True),
                        )
                    )
                await append(conn, events)
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_stalled_consumer_is_cut_off_others_keep_flowing_and_it_resumes(
    core: CoreSetup,
) -> None:
    process = core.process().start()
    try:
        token = core.admin_token()
        core.merchant_token("slow")  # creates the merchant
        big_events(core.dsn, "slow", 400, 20_000)  # ~8 MB: more than any window
        # No BDP probing: the client's window stays small, like a consumer's that stopped.
        options = [("grpc.http2.bdp_probe", 0)]
        slow_channel = api_channel(core.target, core.api_tls(), options=options)
        metadata = (("authorization", f"Bearer {token}"),)
        slow = event_pb2_grpc.EventServiceStub(slow_channel).StreamEvents(
            event_pb2.StreamEventsRequest(parent="merchants/slow"), metadata=metadata, timeout=30
        )
        taken = [next(slow).event.sequence]
        # Meanwhile a second consumer reads everything, undisturbed.
        fast_result: list[int] = []

        def fast() -> None:
            with core.channel(token) as channel:
                fast_result.extend(e.sequence for e in read(channel, 0, 400, "slow"))

        reader = threading.Thread(target=fast)
        reader.start()
        time.sleep(STALL_S * 2.5)  # the slow consumer reads nothing
        reader.join(20)
        assert len(fast_result) == 400 and fast_result == sorted(fast_result)
        # Reading on, the slow consumer gets what was in flight, then the status.
        with pytest.raises(grpc.RpcError) as caught:
            for response in slow:
                taken.append(response.event.sequence)
        error = rich(caught.value)
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.reason == "CONSUMER_TOO_SLOW" and error.domain == "kassa.core"
        reached = int(error.metadata["last_sent_sequence"])
        assert taken[-1] <= reached < fast_result[-1]
        assert taken == list(range(taken[0], taken[-1] + 1))
        slow_channel.close()
        # It resumes from its own cursor and misses nothing.
        with core.channel(token) as channel:
            rest = read(channel, taken[-1], fast_result[-1] - taken[-1], "slow")
        assert [e.sequence for e in rest] == list(range(taken[-1] + 1, fast_result[-1] + 1))
    finally:
        assert process.stop() == 0


def test_a_stream_that_falls_behind_shows_in_the_consumer_metrics(
    tmp_path: Path, fresh_dsn: str
) -> None:
    core = CoreSetup(
        run_dir=tmp_path,
        dsn=fresh_dsn,
        account_xpub=XPUB,
        chains=[{"id": "eip155:31337", "adapter": "127.0.0.1:9", "confirmations": 2}],
        health={"invoices_need_chain": False},
        assets=[{"id": TOKEN, "symbol": "TUSD", "decimals": 6}],
        fixed_rates={"TUSD/USD": "1.00"},
        # Long enough that the stalled stream stays open while it is measured.
        events={"stream_buffer_events": 20, "stream_stall_timeout_s": 60},
    )
    process = core.process().start()
    try:
        token = core.admin_token()
        core.merchant_token("behind")
        big_events(core.dsn, "behind", 5, 100)
        port = core.metrics_port
        idle = wait_for(
            port, lambda m: value(m, "kassa_outbox_head_sequence") >= 5, what="the head"
        )
        assert value(idle, "kassa_outbox_streams_open") == 0
        assert value(idle, "kassa_outbox_consumer_backlog_events", consumer="stream") == 0
        # The webhook gauge keeps its old name and equals its consumer-labelled one.
        assert value(idle, "kassa_outbox_consumer_backlog_events", consumer="webhooks") == value(
            idle, "kassa_outbox_webhook_backlog_events"
        )
        options = [("grpc.http2.bdp_probe", 0)]
        channel = api_channel(core.target, core.api_tls(), options=options)
        metadata = (("authorization", f"Bearer {token}"),)
        stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
            event_pb2.StreamEventsRequest(parent="merchants/behind"), metadata=metadata, timeout=60
        )
        first = next(stream).event.sequence
        assert first == 1
        # Caught up with the five: open, nothing behind.
        wait_for(
            port,
            lambda m: (
                value(m, "kassa_outbox_streams_open") == 1
                and value(m, "kassa_outbox_consumer_sequence", consumer="stream") >= 5
            ),
            what="the open stream caught up",
        )
        # The consumer reads nothing more while 400 big events commit: its
        # transport window and buffer fill and its read cursor stops.
        big_events(core.dsn, "behind", 400, 20_000)
        behind = wait_for(
            port,
            lambda m: (
                value(m, "kassa_outbox_head_sequence") >= 405
                and value(m, "kassa_outbox_consumer_backlog_events", consumer="stream") >= 300
            ),
            what="the stalled stream's lag",
        )
        lag = value(behind, "kassa_outbox_consumer_backlog_events", consumer="stream")
        assert lag <= 405 - first
        # More commits: the lag grows with the head, one series however many streams.
        big_events(core.dsn, "behind", 100, 100)
        grown = wait_for(
            port,
            lambda m: (
                value(m, "kassa_outbox_consumer_backlog_events", consumer="stream") >= lag + 100
            ),
            what="the lag growing",
        )
        assert value(grown, "kassa_outbox_streams_open") == 1
        stream.cancel()
        channel.close()
        wait_for(
            port,
            lambda m: (
                value(m, "kassa_outbox_streams_open") == 0
                and value(m, "kassa_outbox_consumer_backlog_events", consumer="stream") == 0
            ),
            what="the stream closed",
        )
    finally:
        assert process.stop() == 0
