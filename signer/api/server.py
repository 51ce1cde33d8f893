"""The signer's gRPC server: SignerService, health and reflection, over mTLS (or loopback
plaintext in development); SIGHUP reloads the policy, SIGTERM/SIGINT stop cleanly.

Run alone (server.workers = 1) it holds the state directory itself; as one of a
supervisor's workers (signer.api.workers) it binds the shared listen address with
SO_REUSEPORT, and stops when the supervisor's pipe on its stdin closes."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from signer.api import health as signer_health
from signer.api.lifecycle import hold_state, release_orphans
from signer.api.pipeline import PolicyHolder, SignPipeline
from signer.api.servicer import SignerServicer
from signer.config import Config
from signer.hsm.thread import HsmThread
from signer.hsm.token import TokenSession
from signer.policy.load import load_policy, reload_policy
from signer.policy.model import DEFAULT_WINDOW_S
from signer.state import store
from signer.state.store import StoreThread, StoreUnavailable
from signer.telemetry.rpc import RpcMetrics, serve_metrics
from signer.tls.server import Tls13Only, server_credentials

log = logging.getLogger("signer.server")

Probe = Callable[[], Awaitable[str | None]]
SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name
SIGN_METHOD = f"/{SERVICE_NAME}/Sign"
MAX_MESSAGE_BYTES = 32 * 1024
PRUNE_INTERVAL_S = 60.0


async def serve(
    config: Config,
    thread: HsmThread,
    session: TokenSession,
    xpub: str | None,
    worker: int | None = None,
) -> None:
    """worker: None to serve alone; else this process's index among the supervisor's."""
    config.check_serveable()
    assert config.policy_file is not None
    policy = PolicyHolder(load_policy(config))  # a bad policy refuses the start
    owner = hold_state(config.state_dir) if worker is None else None
    hot_keys = {k.label for k in await thread.acall(session.hot_keys)}
    db = StoreThread(config.db_path)
    try:
        if owner is not None:
            # Alone, and holding the directory: nothing else can be signing these.
            await db.acall(
                functools.partial(release_orphans, cause="found at start: the last run ended")
            )
        seq, head_hash = await db.acall(store.head)
        log.info(
            "audit head", extra={"seq": seq, "record_hash": head_hash, "db": str(config.db_path)}
        )
        pipeline = SignPipeline(config, thread, session, xpub, db, policy, hot_keys)
        # One pruner per state file: the single process, or the first worker.
        pruner = asyncio.create_task(_prune_forever(config, db, policy)) if not worker else None
        try:
            probes = (
                signer_health.token_probe(thread, session, hot_keys, xpub is not None),
                signer_health.store_probe(db, config.db_path),
            )
            await _serve(config, thread, session, xpub, pipeline, policy, probes, worker)
        finally:
            if pruner is not None:
                pruner.cancel()
        seq, head_hash = await db.acall(store.head)
        log.info(
            "audit head", extra={"seq": seq, "record_hash": head_hash, "db": str(config.db_path)}
        )
    finally:
        db.close()
        if owner is not None:
            os.close(owner)


async def _prune_forever(config: Config, db: StoreThread, policy: PolicyHolder) -> None:
    """The request-id guard and the velocity counters grow with every signature; rows past
    every window they can matter in are dropped (store.prune says which are kept)."""
    limits = config.limits
    requests_keep_s = limits.max_lifetime_s + 2 * limits.max_skew_s + 60
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_S)
        velocity_keep_s = max([DEFAULT_WINDOW_S, *(c.window_s for c in policy.current.velocity)])
        now_s = time.time()
        try:
            dropped = await db.acall(
                functools.partial(
                    store.prune,
                    now_s=now_s,
                    requests_keep_s=requests_keep_s,
                    velocity_keep_s=velocity_keep_s,
                )
            )
        except StoreUnavailable as exc:
            log.error("pruning the state failed", extra={"error": str(exc)})
            continue
        if any(dropped):
            log.info("state pruned", extra={"requests": dropped[0], "velocity": dropped[1]})


async def _serve(
    config: Config,
    thread: HsmThread,
    session: TokenSession,
    xpub: str | None,
    pipeline: SignPipeline,
    policy: PolicyHolder,
    probes: tuple[Probe, Probe],
    worker: int | None,
) -> None:
    interceptors: list[grpc.aio.ServerInterceptor] = [RpcMetrics()]
    if config.tls is not None:
        interceptors.append(Tls13Only({SIGN_METHOD}))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            # A Sign request is a few KiB (body bounded at 16 KiB); nothing larger is read.
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            # Workers share the address (the kernel spreads connections over them); a signer
            # alone must own it, so a second one on the same port fails instead of sharing.
            ("grpc.so_reuseport", 0 if worker is None else 1),
        ],
    )
    signer_pb2_grpc.add_SignerServiceServicer_to_server(
        SignerServicer(thread, session, xpub, pipeline), server
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if config.tls is None:
        log.warning("plaintext gRPC on loopback (server.insecure_loopback_only): development only")
        server.add_insecure_port(config.server.listen)
    else:
        server.add_secure_port(config.server.listen, server_credentials(config.tls))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_policy, config, policy)
    if worker is not None:
        # The supervisor's pipe: end of file means it is gone, and so must this worker be.
        loop.add_reader(sys.stdin.fileno(), _on_supervisor_pipe, loop, stop)
    metrics_listen = worker_metrics_listen(config.metrics_listen, worker)
    stop_metrics = serve_metrics(metrics_listen) if metrics_listen else None

    async def publish(serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await health.set(service, status)

    # grpc's HealthServicer says SERVING for "" until told otherwise: not before a verdict.
    await publish(False)
    await server.start()
    watcher = asyncio.create_task(signer_health.watch(*probes, publish), name="health")
    if worker is not None:
        sys.stdout.write("ready\n")  # the supervisor starts the next worker on this line
        sys.stdout.flush()
    log.info(
        "serving",
        extra={
            "listen": config.server.listen,
            "metrics": metrics_listen,
            "hd_account": xpub is not None,
            "callers": len(config.callers),
            "tls": config.tls is not None,
            "policy_hash": policy.current.hash,
        },
    )
    await stop.wait()
    log.info("stopping", extra={"grace_s": config.server.grace_s})
    watcher.cancel()
    await health.enter_graceful_shutdown()
    await server.stop(config.server.grace_s)
    if stop_metrics is not None:
        stop_metrics()
    log.info("stopped")


def _on_supervisor_pipe(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    if not os.read(sys.stdin.fileno(), 4096):
        log.warning("the supervisor is gone: stopping")
        loop.remove_reader(sys.stdin.fileno())
        stop.set()


def worker_metrics_listen(listen: str | None, worker: int | None) -> str | None:
    """Each process serves its own /metrics: worker I on metrics.listen's port + I (a
    scrape target per worker; the ports after the configured one must be free)."""
    if listen is None or not worker:
        return listen
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + worker}"
