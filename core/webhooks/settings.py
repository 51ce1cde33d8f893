"""The [webhooks] configuration table."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.webhooks.retry import Policy


@dataclass(frozen=True)
class WebhookSettings:
    # Retries: exponential from initial_backoff_s, capped at max_backoff_s,
    # for give_up_after_s (3 days) after the delivery was created.
    policy: Policy = field(default_factory=Policy)
    # A hard limit on one attempt, connect to last byte.
    timeout_s: float = 10.0
    # Deliveries sent at once by one core process, and at most this many of
    # them to one endpoint (its own kept-alive connections).
    concurrency: int = 16
    endpoint_concurrency: int = 8
    # How often due deliveries are looked for when nothing wakes the worker.
    poll_interval_s: float = 1.0
    # Loopback, private, link-local targets are refused unless allowed
    # (SSRF); local development and the tests allow them.
    allow_private_targets: bool = False
    # How long the previous secret keeps signing after a rotation.
    secret_overlap_s: int = 24 * 3600
    # A claimed attempt's lease beyond timeout_s; after it, a crashed
    # attempt is retried by any worker.
    lease_grace_s: float = 5.0
    # Processes that send deliveries beside the core's event loop, each with
    # its own loop, pool and HTTP sessions (core/webhooks/fleet.py; 0: sent
    # by the core's own loop). concurrency and endpoint_concurrency stay the
    # core's totals, divided among them. Default from the events bench
    # (docs/performance.md, "Webhook deliveries").
    delivery_processes: int = 1


MAX_PROCESSES = 64
_FLOATS = ("timeout_s", "poll_interval_s", "lease_grace_s")
_POLICY = ("initial_backoff_s", "max_backoff_s", "give_up_after_s")


def parse(table: dict[str, Any]) -> WebhookSettings:
    """Raises ValueError naming the key on bad input."""
    known = {f.name for f in fields(WebhookSettings)} - {"policy"} | set(_POLICY)
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"webhooks: unknown keys {unknown}")

    def number(key: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"webhooks.{key} must be a non-negative number")
        return float(value)

    defaults = Policy()
    try:
        policy = Policy(**{k: number(k, getattr(defaults, k)) for k in _POLICY})
    except ValueError as exc:
        raise ValueError(f"webhooks: {exc}") from None
    base = WebhookSettings()
    settings = WebhookSettings(
        policy=policy,
        concurrency=int(number("concurrency", base.concurrency)),
        endpoint_concurrency=int(number("endpoint_concurrency", base.endpoint_concurrency)),
        secret_overlap_s=int(number("secret_overlap_s", base.secret_overlap_s)),
        delivery_processes=int(number("delivery_processes", base.delivery_processes)),
        allow_private_targets=bool(table.get("allow_private_targets", False)),
        **{k: number(k, getattr(base, k)) for k in _FLOATS},
    )
    if (
        settings.timeout_s <= 0
        or settings.concurrency < 1
        or settings.endpoint_concurrency < 1
        or settings.poll_interval_s <= 0
    ):
        raise ValueError(
            "webhooks: timeout_s, concurrency, endpoint_concurrency and poll_interval_s "
            "must be positive"
        )
    processes = table.get("delivery_processes", base.delivery_processes)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes > MAX_PROCESSES:
        raise ValueError(
            f"webhooks.delivery_processes must be a whole number in 0..{MAX_PROCESSES}"
        )
    if processes > min(settings.concurrency, settings.endpoint_concurrency):
        # Each process takes its share of both limits and needs at least one
        # slot of each: the limits stay the core's totals, never exceeded.
        raise ValueError(
            "webhooks.delivery_processes must not exceed concurrency or endpoint_concurrency "
            "(each process sends at least one delivery at a time, to any endpoint)"
        )
    return settings
