"""Calls the signer the way payouts need it: over the payouts' own channel (mTLS with
the configured CA, client certificate and server name), GetPublicKey of the hot key
(answered only to allowlisted callers; it reads the token), then the signer's health.

`wait_until_up` runs once before `serve` opens its port; `watch` runs while the core
serves and publishes each change of the link (health `kassa.signer`,
`kassa_core_signer_up`), logging one line per change, not one per probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core import metrics
from core.payouts.signer_client import SignerClient, refusal_of
from core.signer_link.decide import Cause, LinkDown, classify, not_serving
from kassa.signer.v1 import signer_pb2

log = logging.getLogger("kassa.core.signer_link")
SIGNER_SERVICE = signer_pb2.DESCRIPTOR.services_by_name["SignerService"].full_name
# One call's bound: a signer that has not answered in this long counts as a timeout.
CALL_TIMEOUT_S = 5.0
# Between attempts while waiting at start (grpc's own reconnect backoff is capped
# by the channel: core/payouts/signer_client.py).
RETRY_EVERY_S = 0.5


@dataclass(frozen=True)
class SignerLinkError(Exception):
    """The signer link is down at start, for good (configuration) or past the wait."""

    down: LinkDown
    target: str
    server_name: str
    waited_s: float

    def __str__(self) -> str:
        return f"{self.down.cause}: {self.down.detail}"


async def probe(client: SignerClient, hot_key_id: str, timeout_s: float) -> LinkDown | None:
    """None when the link works for payouts; else why not."""
    try:
        await client.stub.GetPublicKey(
            signer_pb2.GetPublicKeyRequest(key_id=hot_key_id), timeout=timeout_s
        )
        health = await health_pb2_grpc.HealthStub(client.channel).Check(
            health_pb2.HealthCheckRequest(service=SIGNER_SERVICE), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        refusal = refusal_of(exc)
        return classify(exc.code().name, exc.details() or "", refusal.reason if refusal else "")
    if health.status != health_pb2.HealthCheckResponse.SERVING:
        return not_serving(health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))
    return None


async def wait_until_up(
    client: SignerClient,
    hot_key_id: str,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Returns once the link works; raises SignerLinkError at the first refusal waiting
    cannot cure, or with the last cause once `timeout_s` has passed (one attempt at least)."""
    started = clock()
    deadline = started + timeout_s
    while True:
        remaining_s = deadline - clock()
        down = await probe(client, hot_key_id, max(1.0, min(CALL_TIMEOUT_S, remaining_s)))
        if down is None:
            return
        if not down.retried or clock() + RETRY_EVERY_S >= deadline:
            target = client.target
            raise SignerLinkError(
                down, target.target, target.server_name, round(clock() - started, 1)
            )
        await asyncio.sleep(RETRY_EVERY_S)


async def watch(
    client: SignerClient,
    hot_key_id: str,
    interval_s: float,
    publish: Callable[[LinkDown | None], Awaitable[None]],
) -> None:
    """Probes every `interval_s` forever; publishes each change of cause (None: up) and
    logs it once. It starts from up: `serve` publishes that after wait_until_up."""
    last: Cause | None = None
    target = client.target.target
    while True:
        await asyncio.sleep(interval_s)
        down = await probe(client, hot_key_id, min(CALL_TIMEOUT_S, max(interval_s, 1.0)))
        cause = None if down is None else down.cause
        if cause == last:
            continue
        await publish(down)
        if down is None:
            log.info("signer link up", extra={"signer": target})
        else:
            log.warning(
                "signer link down",
                extra={
                    "signer": target,
                    "cause": str(down.cause),
                    "explanation": down.explanation,
                    "error": down.detail,
                },
            )
        last = cause


def set_gauge(target: str, down: LinkDown | None) -> None:
    metrics.SIGNER_UP.labels(target).set(1 if down is None else 0)
