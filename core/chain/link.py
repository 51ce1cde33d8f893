"""The core's link to one chain's adapter: mutual TLS, and the adapter's identity checked.

Whoever answers at the adapter's address must show a certificate from the
[adapters] CA naming the chain's `adapter_name`; anything else fails the
handshake, so no block of theirs is read, let alone applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from core.tls import ClientTls, secure_aio_channel

MAX_RECONNECT_BACKOFF_MS = 2_000


@dataclass(frozen=True)
class AdapterLink:
    target: str
    name: str  # the identity its certificate must carry
    tls: ClientTls | None  # None only with [adapters] dev_plaintext = true

    def channel(self, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
        # gRPC's reconnect backoff grows to 120 s by default: after an adapter
        # restart, a channel that saw it down (the reconciler's, the payout
        # worker's) would refuse calls for up to two minutes. Cap it at 2 s.
        merged = [("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS), *(options or [])]
        return secure_aio_channel(self.target, self.tls, self.name, merged)
