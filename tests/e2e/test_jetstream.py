"""The outbox relayed to a 3-node JetStream cluster on loopback, by 2 core replicas.

Events are made (invoices created through both replicas) while the replica
that relays is SIGKILLed and, later, while a JetStream node is SIGKILLed. A
consumer — live during the kills, and a fresh one afterwards — sees every
outbox event exactly once, in sequence order, with Nats-Msg-Id = the event id.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import nats
import nats.errors
import pytest

from kassa.core.v1 import invoice_pb2, invoice_pb2_grpc
from localstack.fullstack import LocalStack
from localstack.jetstream import NatsCluster
from localstack.replicas import Replicas, leadership_options
from tests.support.metrics import scrape, value, wait_for
from tests.support.waiting import db

LEASE_S = 3.0
STREAM = "KASSA_EVENTS"
SUBJECTS = "kassa.events.>"


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, postgres
) -> Iterator[tuple[Replicas, NatsCluster]]:
    run_dir = Path(tmp_path_factory.mktemp("jetstream"))
    cluster = NatsCluster(run_dir / "nats").start()
    stack = LocalStack(
        run_dir,
        block_time_s=None,
        postgres=postgres,
        core_options={
            **leadership_options(LEASE_S),
            "jetstream": {"servers": cluster.urls, "replicas": 3, "publish_timeout_s": 2},
        },
    )
    try:
        stack.start_all(signer=False)
        replicas = Replicas(stack, 2)
        replicas.start_others()
        yield replicas, cluster
        replicas.stop_others()
    finally:
        stack.stop()
        cluster.stop()


def _relay_leader(dsn: str) -> str | None:
    rows = db(dsn, "SELECT holder FROM leader_epochs WHERE role = 'relay'")
    return rows[0]["holder"] if rows else None


def _stream_leader(cluster: NatsCluster) -> int:
    async def leader() -> str:
        nc = await nats.connect(servers=cluster.urls)
        try:
            info = await nc.jetstream().stream_info(STREAM)
            assert info.cluster is not None and info.cluster.leader
            return str(info.cluster.leader)
        finally:
            await nc.close()

    name = asyncio.run(leader())
    return next(i for i, n in enumerate(cluster.nodes) if n.name == name)


class Consumer:
    """An ordered JetStream consumer in its own thread, recording what it sees."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.seen: list[tuple[int, str, int]] = []  # (Kassa-Sequence, Nats-Msg-Id, body sequence)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        nc = await nats.connect(
            servers=self.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        js = nc.jetstream()
        while True:
            try:
                sub = await js.subscribe(SUBJECTS, ordered_consumer=True)
                break
            except Exception:  # the stream is created by the relay's first start
                await asyncio.sleep(0.5)
        while not self._stop.is_set():
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                continue  # nothing new yet; the ordered consumer recovers by itself
            headers = msg.headers or {}
            body = json.loads(msg.data)
            self.seen.append(
                (int(headers["Kassa-Sequence"]), headers["Nats-Msg-Id"], int(body["sequence"]))
            )
        await nc.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _create(replicas: Replicas, token: str, parent: str, n: int, tag: str) -> None:
    """n invoices through the live replicas; UNAVAILABLE (a chain without a
    leader for the second a takeover takes) is retried, as a client does, with
    the same request_id."""
    stack = replicas.stack
    for i in range(n):
        deadline = time.monotonic() + 30
        while True:
            alive = [s for j, s in enumerate(replicas.setups) if replicas.process(j).running]
            setup = alive[i % len(alive)]
            try:
                with setup.channel(token) as channel:
                    invoice_pb2_grpc.InvoiceServiceStub(channel).CreateInvoice(
                        invoice_pb2.CreateInvoiceRequest(
                            parent=parent,
                            merchant_order_id=f"{tag}-{i}",
                            asset=stack.token_asset,
                            price=invoice_pb2.FiatAmount(amount="5.00", currency="USD"),
                            request_id=f"{tag}-{i}",
                        )
                    )
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


def _outbox(dsn: str) -> list[tuple[int, str]]:
    return [
        (r["sequence"], str(r["id"]))
        for r in db(dsn, "SELECT sequence, id FROM events ORDER BY sequence")
    ]


def _until(what: str, predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_every_event_once_in_order_across_a_relay_kill_and_a_jetstream_node_kill(
    setup: tuple[Replicas, NatsCluster],
) -> None:
    replicas, cluster = setup
    dsn = replicas.stack.dsn
    live = Consumer(cluster.urls)
    try:
        token = replicas.setups[0].merchant_token("fanout")
        parent = "merchants/fanout"
        _create(replicas, token, parent, 6, "before")
        _until("a relay leader", lambda: _relay_leader(dsn), 30)
        victim = replicas.index_of(_relay_leader(dsn) or "")
        replicas.kill(victim)  # SIGKILL the relaying replica
        _create(replicas, token, parent, 6, "after-relay-kill")
        _until(
            "another replica relaying",
            lambda: _relay_leader(dsn) not in (None, f"replica-{victim}"),
            30,
        )
        # SIGKILL the JetStream node that leads the stream (it has 3 replicas).
        node = _stream_leader(cluster)
        cluster.kill(node)
        _create(replicas, token, parent, 6, "after-node-kill")
        cluster.restart(node)
        replicas.start(victim)
        _create(replicas, token, parent, 4, "after-restarts")
        outbox = _outbox(dsn)
        expected = [(seq, event_id, seq) for seq, event_id in outbox]
        _until(
            "the live consumer to see the whole outbox", lambda: len(live.seen) >= len(outbox), 60
        )
        time.sleep(1.0)  # anything more (a duplicate) would arrive now
        # The relaying replica's metrics: the last relayed sequence is the head,
        # nothing behind; the other replica (not relaying) has no jetstream series.
        leader = replicas.index_of(_relay_leader(dsn) or "")
        head = outbox[-1][0]
        relaying = wait_for(
            replicas.setups[leader].metrics_port,
            lambda m: (
                value(m, "kassa_outbox_consumer_sequence", consumer="jetstream") == head
                and value(m, "kassa_outbox_head_sequence") == head
            ),
            what="the relay at the head",
        )
        assert value(relaying, "kassa_outbox_consumer_backlog_events", consumer="jetstream") == 0
        other = scrape(replicas.setups[1 - leader].metrics_port)
        jetstream = frozenset({("consumer", "jetstream")})
        assert ("kassa_outbox_consumer_sequence", jetstream) not in other
        assert value(other, "kassa_outbox_head_sequence") == head
    finally:
        live.stop()
    assert live.seen == expected
    after = Consumer(cluster.urls)  # a consumer that starts afterwards reads the same
    try:
        _until("a fresh consumer to read the stream", lambda: len(after.seen) >= len(outbox), 60)
        time.sleep(0.5)
    finally:
        after.stop()
    assert after.seen == expected
    assert [s for s, _ in outbox] == list(range(1, len(outbox) + 1))
