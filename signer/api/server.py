"""The signer's gRPC server: SignerService, health and reflection, stopped cleanly by signals."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from kassa.signer.v1 import signer_pb2, signer_pb2_grpc
from signer.api.servicer import SignerServicer
from signer.config import Config
from signer.hsm.thread import HsmThread
from signer.hsm.token import TokenSession

log = logging.getLogger("signer.server")

SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name


async def serve(config: Config, thread: HsmThread, session: TokenSession, xpub: str | None) -> None:
    server = grpc.aio.server()
    callers = {c.key_id: c.ed25519_public_key for c in config.callers}
    signer_pb2_grpc.add_SignerServiceServicer_to_server(
        SignerServicer(thread, session, xpub, callers), server
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )
    server.add_insecure_port(config.server.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"listen": config.server.listen, "hd_account": xpub is not None,
                               "callers": len(callers)})
    await stop.wait()
    log.info("stopping", extra={"grace_s": config.server.grace_s})
    await health.enter_graceful_shutdown()
    await server.stop(config.server.grace_s)
    log.info("stopped")
