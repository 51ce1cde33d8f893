"""Wires the core together and runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core import health as core_health
from core import metrics as core_metrics
from core.api.auth import Authenticator, current_actor
from core.api.event_service import EventService
from core.api.event_service import add_to_server as add_event_service
from core.api.exception_service import ExceptionService
from core.api.guard import EdgeInterceptor
from core.api.interceptors import OncePerMethod
from core.api.invoice_service import InvoiceService
from core.api.leader import LEADER_WAIT_S
from core.api.ledger_service import LedgerService
from core.api.merchant_service import MerchantService
from core.api.payout_service import PayoutService, SweepService
from core.api.reconciliation_service import ReconciliationService
from core.api.support_service import SupportService
from core.api.webhook_service import WebhookService
from core.chain.apply import ChainApplier
from core.chain.follower import ChainFollower
from core.chain.hd import DepositAddresses
from core.chain.index import ActiveInvoiceIndex
from core.chain.link import AdapterLink
from core.config import Config
from core.events.stream import OutboxNotifier, Tail
from core.invoices import clock as invoice_clock
from core.invoices.invoicing import Invoicing
from core.leadership import invoice_feed
from core.leadership.decide import follower_role
from core.leadership.guard import Leadership, follow_led, track_applied_head
from core.ledger import expiry as ledger_expiry
from core.ledger.batcher import Poster
from core.ledger.queries import LedgerReader
from core.merchants import Merchants
from core.merchants.store import ApiKeys
from core.payouts.destinations import policy_of as destination_policy
from core.payouts.payouts import Payouts
from core.payouts.signer_client import SignerClient
from core.payouts.sweeps import Sweeper
from core.payouts.worker import PayoutWorker
from core.rates.config import build_router
from core.reconcile.exceptions import Exceptions
from core.reconcile.runner import Reconciler
from core.reconcile.store import Reconciliations
from core.relay.relay import Relay
from core.render import events as render_events
from core.signer_link import probe as signer_probe
from core.signer_link.decide import LinkDown
from core.startup import ListenError
from core.store.db import create_pool
from core.store.migrate import MigrationError, migrate, refusal_to_serve, schema_status
from core.support.actions import SupportActions
from core.telemetry.rpc import RpcMetrics, serve_metrics
from core.tls import Tls13Only, server_credentials
from core.webhooks.endpoints import Endpoints
from core.webhooks.reseal import reseal
from core.webhooks.supervisor import DeliveryProcesses
from core.webhooks.worker import DeliveryWorker
from kassa.chain.v1 import adapter_pb2_grpc
from kassa.core.v1 import (
    event_pb2,
    exception_pb2,
    exception_pb2_grpc,
    invoice_pb2,
    invoice_pb2_grpc,
    merchant_pb2,
    merchant_pb2_grpc,
    payout_pb2,
    payout_pb2_grpc,
    reconciliation_pb2,
    reconciliation_pb2_grpc,
    support_pb2,
    support_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from kassa.ledger.v1 import ledger_pb2, ledger_pb2_grpc

log = logging.getLogger("kassa.core")
SERVICES = (
    invoice_pb2.DESCRIPTOR.services_by_name["InvoiceService"].full_name,
    event_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name,
    merchant_pb2.DESCRIPTOR.services_by_name["MerchantService"].full_name,
    payout_pb2.DESCRIPTOR.services_by_name["PayoutService"].full_name,
    payout_pb2.DESCRIPTOR.services_by_name["SweepService"].full_name,
    webhook_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
    reconciliation_pb2.DESCRIPTOR.services_by_name["ReconciliationService"].full_name,
    exception_pb2.DESCRIPTOR.services_by_name["ExceptionService"].full_name,
    support_pb2.DESCRIPTOR.services_by_name["SupportService"].full_name,
)


def api_server(auth: Authenticator, tls: bool) -> grpc.aio.Server:
    """The API's gRPC server with the edge every call passes (the ledger benchmark
    serves through it too, so that it measures what a caller gets)."""
    # Every call counted and access-logged, with the final status the edge mapped; TLS 1.3
    # only (as far as gRPC Python lets us: see core/tls.py); plaintext is a dev flag.
    # Then every kassa.* RPC: decoded safely, authenticated, bounds-checked, errors mapped.
    tls_only = [Tls13Only()] if tls else []
    edge = [RpcMetrics(current_actor), *tls_only, EdgeInterceptor(auth)]
    return grpc.aio.server(
        # Each method's handler wrapped by the edge once, not on every call.
        interceptors=[OncePerMethod(edge)],
        # grpc binds with SO_REUSEPORT by default: a second core (or anything else with
        # it) on the same address would share the port silently; it must fail instead.
        options=[("grpc.so_reuseport", 0)],
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def _reconciler(
    pool: asyncpg.Pool,
    config: Config,
    signer: SignerClient | None,
    clock: Callable[[], datetime],
) -> Reconciler:
    """Reconciliation of every chain; the hot key and treasuries are compared
    when payouts and sweeps are configured."""
    hot: list[str] = []

    async def hot_address() -> str | None:
        if signer is None or config.payouts is None:
            return None
        if not hot:  # the signer names it once; it never changes for a key id
            hot.append(await signer.address_of(config.payouts.hot_key_id))
        return hot[0]

    sweeps = config.payouts.sweeps if config.payouts is not None else None
    adapters = {
        c.id: adapter_pb2_grpc.ChainAdapterServiceStub(
            AdapterLink(c.adapter, c.adapter_name, config.adapters_tls).channel()
        )
        for c in config.chains
    }
    return Reconciler(
        pool,
        config,
        config.reconcile,
        adapters,
        hot_address,
        dict(sweeps.treasury) if sweeps is not None else {},
        clock,
    )


async def serve(
    config: Config, clock: Callable[[], datetime] = utc_now, apply_migrations: bool = False
) -> None:
    """Runs the core. The schema must be current: `kassa-core migrate` brings it there
    (or apply_migrations, `serve --migrate`); a newer schema is refused either way."""
    if apply_migrations:
        applied = await migrate(config.dsn)
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
    refusal = refusal_to_serve(await schema_status(config.dsn))
    if refusal is not None:
        raise MigrationError(refusal)
    # Payouts only with a [signer]; PayoutService then answers, else UNIMPLEMENTED.
    # The link is checked before anything else starts: a signer starting beside the
    # core is waited for, a refusal is one log line and exit 1 (core/main.py).
    signer: SignerClient | None = None
    if config.payouts is not None:
        if config.payouts.signer.ca_file is None:
            log.warning(
                "the signer link is PLAINTEXT (signer.dev_plaintext = true); never outside "
                "development, and the signer accepts it only on loopback"
            )
        signer = SignerClient(config.payouts.signer)
        try:
            await signer_probe.wait_until_up(
                signer, config.payouts.hot_key_id, config.payouts.signer.startup_timeout_s
            )
        except BaseException:
            await signer.close()
            raise
    pool = await create_pool(config.dsn, config.pool_size)
    # Webhook secrets are sealed under the current KEK before anything can read them
    # (plaintext rows from before migration 0009, rows under an older KEK).
    assert config.webhook_keys is not None, "config.parse requires [secrets]"
    await reseal(pool, config.webhook_keys)
    notifier = OutboxNotifier(config.dsn)
    await notifier.start()
    index = ActiveInvoiceIndex()
    async with pool.acquire() as conn:
        # Before the load: what other replicas create later reaches the index
        # through the feed (core/leadership/invoice_feed.py).
        feed_after = await invoice_feed.outbox_head(conn)
        loaded = await index.load(conn)
    log.info("active invoice index loaded", extra={"invoices": loaded})

    followers = {
        c.id: ChainFollower(
            ChainApplier(pool, c.id, index, clock),
            AdapterLink(c.adapter, c.adapter_name, config.adapters_tls),
            config.reconnect_backoff_s,
            include_pending=c.zero_conf,
            pending_ttl_s=c.pending_ttl_s,
        )
        for c in config.chains
    }
    rates = build_router(config.rates)
    invoicing = Invoicing(pool, config, DepositAddresses(config.account_xpub), index, rates, clock)

    # Work with one owner across replicas runs under leadership (core/leadership):
    # one elected replica per role, every write of it fenced by its epoch.
    leadership = Leadership(config.dsn, config.leadership)

    def head_of(chain: str) -> int | None:
        follower = followers.get(chain)
        return follower.head_height if follower else None

    def chain_views() -> dict[str, core_health.ChainView]:
        return {
            chain: core_health.ChainView(
                streaming=f.following.is_set(),
                since_event_s=f.since_event_s(),
                lag_blocks=None
                if f.head_height is None or f.applied_height is None
                else f.head_height - f.applied_height,
            )
            if leadership.leads(follower_role(chain))
            or not leadership.led_elsewhere.get(follower_role(chain))
            # Followed by another replica that leads it (core/leadership): that one's
            # health says whether the stream is fresh.
            else core_health.ChainView(streaming=True, since_event_s=0.0, lag_blocks=None)
            for chain, f in followers.items()
        }

    def chain_problem(chain: str) -> str | None:
        if not config.health.invoices_need_chain:
            return None
        return core_health.chain_problem(chain_views()[chain], config.health)

    async def database_answers() -> bool:
        try:
            async with asyncio.timeout(config.health.interval_s + 2):
                async with pool.acquire() as conn:
                    return bool(await conn.fetchval("SELECT true"))
        except Exception:  # any way the probe fails (refused, reset, timed out) is "no"
            return False

    auth = Authenticator(ApiKeys(pool), config.key_cache_s)
    server = api_server(auth, tls=config.api_tls is not None)
    invoice_pb2_grpc.add_InvoiceServiceServicer_to_server(
        InvoiceService(invoicing, config, auth, head_of, chain_problem), server
    )
    add_event_service(
        EventService(
            Tail(pool, render_events.stream_response_bytes), notifier, auth, config.events
        ),
        server,
    )
    webhooks = config.webhooks
    webhook_pb2_grpc.add_WebhookServiceServicer_to_server(
        WebhookService(
            Endpoints(
                pool,
                webhooks.policy.give_up_after_s,
                webhooks.secret_overlap_s,
                config.webhook_keys,
            ),
            auth,
            webhooks.allow_private_targets,
            clock,
        ),
        server,
    )
    poster = Poster(pool, clock)
    poster.start()
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(
        LedgerService(LedgerReader(pool), poster, auth, clock), server
    )
    merchant_pb2_grpc.add_MerchantServiceServicer_to_server(
        MerchantService(Merchants(pool), auth), server
    )
    payout_worker: PayoutWorker | None = None
    sweeper: Sweeper | None = None
    support_payouts: Payouts | None = None
    if config.payouts is not None:
        assert signer is not None
        payout_worker = PayoutWorker(pool, config, config.payouts, signer, clock)
        support_payouts = Payouts(
            pool, config.payouts.hot_key_id, destination_policy(config.payouts, config.assets)
        )
        payout_pb2_grpc.add_PayoutServiceServicer_to_server(
            PayoutService(
                support_payouts,
                config,
                auth,
                clock,
            ),
            server,
        )
        # Sweeps only with [sweeps] enabled; the payout worker sends what they plan.
        if config.payouts.sweeps is not None:
            sweeper = Sweeper(
                pool,
                config,
                config.payouts,
                config.payouts.sweeps,
                signer,
                clock,
                payout_worker.adapters,
            )
            payout_pb2_grpc.add_SweepServiceServicer_to_server(
                SweepService(
                    sweeper, auth, functools.partial(leadership.fence_of, "sweeps", LEADER_WAIT_S)
                ),
                server,
            )
    reconciler = _reconciler(pool, config, signer, clock)
    reconciliation_pb2_grpc.add_ReconciliationServiceServicer_to_server(
        ReconciliationService(
            reconciler,
            Reconciliations(pool),
            auth,
            functools.partial(leadership.fence_of, "reconcile", LEADER_WAIT_S),
        ),
        server,
    )
    exception_pb2_grpc.add_ExceptionServiceServicer_to_server(
        ExceptionService(Exceptions(pool), auth, clock, config.support.require_second_approval),
        server,
    )
    support_pb2_grpc.add_SupportServiceServicer_to_server(
        SupportService(
            SupportActions(
                pool,
                config.support,
                invoicing,
                support_payouts,
                webhooks.policy.give_up_after_s,
                clock,
            ),
            auth,
            clock,
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )
    if config.api_tls is None:
        log.warning(
            "the API listens in PLAINTEXT (server.dev_plaintext = true): API keys cross the "
            "network in clear; never outside local development",
            extra={"listen": config.listen},
        )
    try:
        if config.api_tls is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, server_credentials(config.api_tls))
    except RuntimeError as exc:  # grpc's "Failed to bind to address …"
        raise ListenError("api", config.listen, str(exc).split(";")[0]) from None
    if config.adapters_tls is None:
        log.warning(
            "adapter links are PLAINTEXT (adapters.dev_plaintext = true): whoever answers at an "
            "adapter's address decides which payments are credited; never outside development"
        )
    if port == 0:
        raise ListenError("api", config.listen, "no address bound")
    try:
        stop_metrics = serve_metrics(config.metrics_listen) if config.metrics_listen else None
    except OSError as exc:
        raise ListenError(
            "metrics", config.metrics_listen or "", exc.strerror or str(exc)
        ) from None

    async def publish(verdict: core_health.Verdict) -> None:
        def status(ok: bool) -> int:
            return int(
                health_pb2.HealthCheckResponse.SERVING
                if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )

        await health_servicer.set("", status(verdict.serving))
        for name in SERVICES:
            await health_servicer.set(name, status(verdict.database_ok))
        for chain, problem in verdict.chains.items():
            await health_servicer.set(core_health.CHAIN_PREFIX + chain, status(problem is None))

    # grpc's HealthServicer says SERVING for "" until told otherwise: the first verdict is
    # in place before the port opens, so a client that connects at once reads the truth.
    await publish(core_health.decide(await database_answers(), chain_views(), config.health))

    async def publish_signer(down: LinkDown | None) -> None:
        # Its own entry only: a signer that goes away stops payouts, never the invoice API.
        assert config.payouts is not None
        signer_probe.set_gauge(config.payouts.signer.target, down)
        await health_servicer.set(
            core_health.SIGNER_SERVICE,
            health_pb2.HealthCheckResponse.SERVING
            if down is None
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )

    if signer is not None:
        await publish_signer(None)  # wait_until_up saw it answer
    await server.start()
    # Each background loop under a supervisor: an exception it does not
    # handle itself (asyncpg.InterfaceError while the database is away) is
    # logged and the loop restarted, never left as a dead task whose error
    # surfaces only at shutdown. The health watcher is one of them: its
    # verdict is what NOT_SERVING during an outage rests on.
    feed = invoice_feed.InvoiceFeed(pool, index, feed_after)
    tasks = [
        _supervised(
            f"follow {chain}",
            leadership.guard(follower_role(chain), follow_led(f, feed)),
            config.reconnect_backoff_s,
        )
        for chain, f in followers.items()
    ]
    # A replica that does not lead a chain shows the leader's applied head.
    tasks += [
        _supervised(
            f"head {chain}",
            functools.partial(track_applied_head, leadership, follower_role(chain), f, pool),
            1.0,
        )
        for chain, f in followers.items()
    ]
    watcher = _supervised(
        "health",
        lambda: core_health.watch(config.health, database_answers, chain_views, publish),
        config.health.interval_s,
    )
    tasks.append(watcher)
    if signer is not None and config.payouts is not None:
        link, hot_key_id = signer, config.payouts.hot_key_id
        tasks.append(
            _supervised(
                "signer link",
                lambda: signer_probe.watch(
                    link, hot_key_id, link.target.health_interval_s, publish_signer
                ),
                link.target.health_interval_s,
            )
        )
    # The outbox fanned out to NATS JetStream, by one replica (core/relay).
    relay = Relay(pool, notifier, config.jetstream) if config.jetstream is not None else None
    tasks.append(
        _supervised(
            "metrics",
            lambda: core_metrics.run(
                pool,
                config.metrics_interval_s,
                config.support,
                relay.relayed if relay is not None else None,
            ),
            config.metrics_interval_s,
        )
    )
    tasks.append(
        _supervised(
            "invoice clock",
            leadership.guard(
                "clock",
                lambda fence: invoice_clock.run(pool, clock, config.expiry_interval_s, fence),
            ),
            config.expiry_interval_s,
        )
    )
    tasks.append(
        _supervised(
            "ledger expiry",
            lambda: ledger_expiry.run(pool, clock, config.expiry_interval_s),
            config.expiry_interval_s,
        )
    )
    # Webhook deliveries: created from the outbox, sent, retried (core.webhooks.worker);
    # sent by delivery processes beside this one (core/webhooks/supervisor.py), or
    # with delivery_processes = 0 by this loop.
    deliverers: DeliveryProcesses | None = None
    if webhooks.delivery_processes:
        assert config.path is not None, "delivery processes load the core's configuration file"

        async def publish_webhooks(problem: str | None) -> None:
            await health_servicer.set(
                core_health.WEBHOOKS_SERVICE,
                health_pb2.HealthCheckResponse.SERVING
                if problem is None
                else health_pb2.HealthCheckResponse.NOT_SERVING,
            )

        deliverers = DeliveryProcesses(config.path, webhooks.delivery_processes, publish_webhooks)
        dispatcher = DeliveryWorker(
            pool, notifier, webhooks, clock, config.webhook_keys, on_created=deliverers.wake
        )
        tasks.append(_supervised("webhooks dispatch", dispatcher.run_dispatcher, 1.0))
        tasks.append(_supervised("webhook delivery processes", deliverers.run, 1.0))
    else:
        delivery = DeliveryWorker(pool, notifier, webhooks, clock, config.webhook_keys)
        tasks.append(_supervised("webhooks", delivery.run, 1.0))
    if payout_worker is not None:
        # One leader sends payouts (nonces of the hot key are allocated in order).
        worker = payout_worker
        tasks.append(_supervised("payouts", leadership.guard("payouts", worker.run), 1.0))
    if sweeper is not None:
        sweeps = sweeper
        tasks.append(_supervised("sweeps", leadership.guard("sweeps", sweeps.run), 1.0))
    tasks.append(_supervised("reconcile", leadership.guard("reconcile", reconciler.run), 1.0))
    if relay is not None:
        relayer = relay
        tasks.append(_supervised("jetstream relay", leadership.guard("relay", relayer.run), 1.0))
    log.info(
        "core serving",
        extra={
            "listen": config.listen,
            "metrics": config.metrics_listen,
            "tls": config.api_tls is not None,
            "client_certificates": config.api_tls is not None
            and config.api_tls.client_ca is not None,
            "chains": list(followers),
            "signer": config.payouts.signer.target if config.payouts is not None else None,
            # "uvloop" in the kassa-core process (core/event_loop.py); tests serve on asyncio's.
            "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
        },
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("core stopping")
    if deliverers is not None:
        deliverers.stop_restarting()
    watcher.cancel()  # NOT_SERVING stays until the end
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    # Every step runs whatever the one before it raised, so that a core that
    # lost its database still closes everything and exits 0; each is bounded
    # (a step waiting on a dead database connection is logged and left behind),
    # so the whole stop stays well inside a supervisor's stop timeout.
    for step, action, bound_s in (
        ("server", lambda: server.stop(grace=5), 6.0),
        ("ledger poster", poster.stop, 2.0),
        ("background tasks", lambda: _cancel_all(tasks), 2.0),
        ("signer client", signer.close if signer is not None else _nothing, 1.0),
        ("outbox notifier", notifier.close, 1.0),
        ("pool", pool.close, 2.0),
        ("metrics endpoint", lambda: _call(stop_metrics), 1.0),
    ):
        try:
            await asyncio.wait_for(action(), timeout=bound_s)
        except Exception as exc:
            log.warning("shutdown step failed", extra={"step": step, "error": type(exc).__name__})
            if step == "pool":
                pool.terminate()
    log.info("core stopped")


async def _nothing() -> None:
    return None


async def _call(action: Callable[[], None] | None) -> None:
    if action is not None:
        action()


def _supervised(
    name: str, run: Callable[[], Awaitable[None]], restart_after_s: float
) -> asyncio.Task[None]:
    async def keep_running() -> None:
        while True:
            try:
                await run()
                # Returning is a loop's way of saying it has nothing to do (the reconciler
                # and sweeps with interval_s = 0): not restarted, not logged every second.
                log.info("background task has nothing to do", extra={"task": name})
                return
            except Exception:
                log.exception("background task failed; restarting", extra={"task": name})
            await asyncio.sleep(max(restart_after_s, 0.1))

    return asyncio.create_task(keep_running(), name=name)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):
            log.warning(
                "background task ended with an error",
                extra={"task": task.get_name(), "error": type(result).__name__},
            )
