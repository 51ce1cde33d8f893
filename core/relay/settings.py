"""[jetstream] configuration: the relay is off unless the table is given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.relay.subjects import is_prefix

_KEYS = {
    "servers",
    "stream",
    "subject_prefix",
    "replicas",
    "duplicate_window_s",
    "publish_timeout_s",
}


@dataclass(frozen=True)
class JetStreamSettings:
    servers: tuple[str, ...]
    stream: str = "KASSA_EVENTS"
    subject_prefix: str = "kassa.events"
    # Copies of each message in a clustered JetStream (1 for a single server).
    replicas: int = 1
    # How long the stream remembers a Nats-Msg-Id (a re-publish within it is dropped).
    duplicate_window_s: float = 3600.0
    publish_timeout_s: float = 5.0


def parse(raw: Mapping[str, object]) -> JetStreamSettings | None:
    if not raw:
        return None
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"jetstream: unknown keys {sorted(unknown)}")
    servers = raw.get("servers")
    if (
        not isinstance(servers, list)
        or not servers
        or not all(isinstance(s, str) and s.startswith(("nats://", "tls://")) for s in servers)
    ):
        raise ValueError("jetstream.servers must be a list of nats:// or tls:// URLs")
    stream = raw.get("stream", JetStreamSettings.stream)
    if not isinstance(stream, str) or not stream.replace("_", "").replace("-", "").isalnum():
        raise ValueError("jetstream.stream must be letters, digits, - and _")
    prefix = raw.get("subject_prefix", JetStreamSettings.subject_prefix)
    if not isinstance(prefix, str) or not is_prefix(prefix):
        raise ValueError("jetstream.subject_prefix must be dot-separated subject tokens")
    replicas = raw.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
        raise ValueError("jetstream.replicas must be 1..5")
    numbers = {}
    for key, default in (
        ("duplicate_window_s", JetStreamSettings.duplicate_window_s),
        ("publish_timeout_s", JetStreamSettings.publish_timeout_s),
    ):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"jetstream.{key} must be a positive number of seconds")
        numbers[key] = float(value)
    return JetStreamSettings(
        tuple(servers),
        stream,
        prefix,
        replicas,
        numbers["duplicate_window_s"],
        numbers["publish_timeout_s"],
    )
