"""kassa-evm: serves ChainAdapterService for one EVM chain.

Exit codes: 0 after SIGTERM/SIGINT, 2 for a configuration it cannot use
(bad file, or a node on another chain), 1 when no node is reachable.
"""

from __future__ import annotations

import os

# gRPC's C core writes its own plain-text lines on stderr (a failed TLS handshake is
# an INFO line); this process's stderr is one JSON object per line, so only gRPC's
# errors, unless the operator asks for more. Read once, when grpc is first
# imported: here, before it is. (The core does the same in core/main.py.)
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters.evm import logs
from adapters.evm.blocks import BlockFetcher
from adapters.evm.config import Config, ConfigError, load
from adapters.evm.heads import HeadTracker
from adapters.evm.normalise import quantity
from adapters.evm.rpc import NodeUnavailable, RpcClient, RpcError
from adapters.evm.service import ChainAdapter
from adapters.evm.telemetry.logs import setup as setup_logs
from adapters.evm.telemetry.rpc import RpcMetrics, serve_metrics
from adapters.evm.tls import AllowedCallersOnly, ServerTls, server_credentials
from adapters.evm.tls import load as load_tls
from adapters.evm.traces import TraceMethod, trace_request
from kassa.chain.v1 import adapter_pb2 as pb
from kassa.chain.v1 import adapter_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ChainAdapterService"].full_name
SHUTDOWN_GRACE_S = 5.0
STARTUP_CONNECT_TIMEOUT_S = 30.0
NODE_HEALTH_INTERVAL_S = 0.5


class StartupError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def serve(config: Config, tls: ServerTls | None) -> None:
    rpc = RpcClient(config.node_urls, config.request_timeout_s)
    try:
        await rpc.start(STARTUP_CONNECT_TIMEOUT_S)
    except NodeUnavailable as exc:
        raise StartupError(str(exc), 1) from None
    try:
        node_chain_id = quantity(await rpc.call("eth_chainId"))
    except (RpcError, NodeUnavailable, ValueError) as exc:
        await rpc.close()
        raise StartupError(
            f"cannot read eth_chainId from {logs.redact_url(rpc.current_url)}: {exc}", 1
        ) from None
    if node_chain_id != config.chain_id:
        await rpc.close()
        raise StartupError(
            f"the node at {logs.redact_url(rpc.current_url)} serves chain id {node_chain_id}, but "
            f"chain.chain_id is {config.chain_id}: refusing to start",
            2,
        )

    heads = HeadTracker(rpc, config.poll_interval_s)
    await heads.start()
    fetcher = BlockFetcher(rpc, config.chain_id, config.tokens, config.internal_transfers)
    if config.internal_transfers is not TraceMethod.OFF:
        await _check_tracing(rpc, config, heads)

    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
        # Only the configured callers (the core), on TLS 1.3, reach any handler; every call
        # is counted and access-logged first.
        interceptors=[RpcMetrics()]
        + ([AllowedCallersOnly(tls.allowed_callers)] if tls is not None else []),
    )
    servicer = ChainAdapter(config, rpc, fetcher, heads)
    pb_grpc.add_ChainAdapterServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        if tls is None:
            logs.warning(
                "plaintext",
                message="server.dev_plaintext = true: anyone who reaches the port may read "
                "the chain through this adapter and broadcast; never outside development",
            )
            server.add_insecure_port(config.listen)
        else:
            server.add_secure_port(config.listen, server_credentials(tls))
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {config.listen}: {exc}", 2) from None
    stop_metrics = serve_metrics(config.metrics_listen) if config.metrics_listen else None
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logs.info(
        "started",
        listen=config.listen,
        metrics=config.metrics_listen,
        tls=tls is not None,
        allowed_callers=sorted(tls.allowed_callers) if tls is not None else None,
        chain=f"eip155:{config.chain_id}",
        node=rpc.current_url,
        tokens=list(config.tokens),
        head=heads.head.height if heads.head else None,
    )

    node_health = asyncio.create_task(_report_node_health(rpc, health_servicer))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logs.info("stopping", grace_s=SHUTDOWN_GRACE_S)
    node_health.cancel()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer.stopping.set()
    await server.stop(SHUTDOWN_GRACE_S)
    await servicer.pending.stop()
    await heads.stop()
    await rpc.close()
    if stop_metrics is not None:
        stop_metrics()
    logs.info("stopped")


async def _report_node_health(rpc: RpcClient, health_servicer: health.aio.HealthServicer) -> None:
    """The service is NOT_SERVING while no node is connected (failing over,
    or backing off with every URL down), so a load balancer or the core's
    health check sees it; streams wait meanwhile and resume without a gap."""
    serving = True
    while True:
        await asyncio.sleep(NODE_HEALTH_INTERVAL_S)
        if rpc.connected == serving:
            continue
        serving = rpc.connected
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
        if serving:
            logs.info("node_reachable", url=rpc.current_url)
        else:
            logs.warning("no_node_reachable", urls=rpc.urls)


async def _check_tracing(rpc: RpcClient, config: Config, heads: HeadTracker) -> None:
    """Refuses to start when the node cannot give the configured traces: an
    adapter that silently missed internal transfers would be worse."""
    head = heads.head
    assert head is not None
    method, params = trace_request(config.internal_transfers, head.hash, head.height)
    try:
        await rpc.call(method, *params)
    except (RpcError, NodeUnavailable) as exc:
        await heads.stop()
        await rpc.close()
        raise StartupError(
            f"chain.internal_transfers = {config.internal_transfers.value!r}, but the node at "
            f"{rpc.current_url} cannot answer {method}: {exc}",
            2,
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassa-evm", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    args = parser.parse_args(argv)
    setup_logs()
    try:
        config = load(args.config)
        tls = load_tls(config.tls) if config.tls is not None else None
    except ConfigError as exc:
        logs.error("bad_config", path=str(args.config), message=str(exc))
        return 2
    setup_logs(config.log_level)
    try:
        asyncio.run(serve(config, tls))
    except StartupError as exc:
        logs.error("startup_failed", message=str(exc))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
