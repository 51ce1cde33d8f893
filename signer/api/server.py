"""The signer's gRPC server: SignerService, health and reflection, over mTLS (or loopback
plaintext in development); SIGHUP reloads the policy, SIGTERM/SIGINT stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from signer.api.pipeline import PolicyHolder, SignPipeline
from signer.api.servicer import SignerServicer
from signer.config import Config
from signer.hsm.thread import HsmThread
from signer.hsm.token import TokenSession
from signer.policy.load import load_policy, reload_policy
from signer.state import store
from signer.state.store import StoreThread
from signer.tls.server import Tls13Only, server_credentials
from telemetry.metrics import RpcMetrics, serve_metrics

log = logging.getLogger("signer.server")

SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name
SIGN_METHOD = f"/{SERVICE_NAME}/Sign"


async def serve(config: Config, thread: HsmThread, session: TokenSession, xpub: str | None) -> None:
    config.check_serveable()
    assert config.policy_file is not None
    policy = PolicyHolder(load_policy(config))  # a bad policy refuses the start
    hot_keys = {k.label for k in await thread.acall(session.hot_keys)}
    db = StoreThread(config.db_path)
    try:
        seq, head_hash = await db.acall(store.head)
        log.info(
            "audit head", extra={"seq": seq, "record_hash": head_hash, "db": str(config.db_path)}
        )
        pipeline = SignPipeline(config, thread, session, xpub, db, policy, hot_keys)
        await _serve(config, thread, session, xpub, pipeline, policy)
        seq, head_hash = await db.acall(store.head)
        log.info(
            "audit head", extra={"seq": seq, "record_hash": head_hash, "db": str(config.db_path)}
        )
    finally:
        db.close()


async def _serve(
    config: Config,
    thread: HsmThread,
    session: TokenSession,
    xpub: str | None,
    pipeline: SignPipeline,
    policy: PolicyHolder,
) -> None:
    interceptors: list[grpc.aio.ServerInterceptor] = [RpcMetrics()]
    if config.tls is not None:
        interceptors.append(Tls13Only({SIGN_METHOD}))
    server = grpc.aio.server(interceptors=interceptors)
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
    stop_metrics = serve_metrics(config.metrics_listen) if config.metrics_listen else None
    await server.start()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving",
        extra={
            "listen": config.server.listen,
            "metrics": config.metrics_listen,
            "hd_account": xpub is not None,
            "callers": len(config.callers),
            "tls": config.tls is not None,
            "policy_hash": policy.current.hash,
        },
    )
    await stop.wait()
    log.info("stopping", extra={"grace_s": config.server.grace_s})
    await health.enter_graceful_shutdown()
    await server.stop(config.server.grace_s)
    if stop_metrics is not None:
        stop_metrics()
    log.info("stopped")
