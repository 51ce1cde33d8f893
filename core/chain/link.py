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


@dataclass(frozen=True)
class AdapterLink:
    target: str
    name: str  # the identity its certificate must carry
    tls: ClientTls | None  # None only with [adapters] dev_plaintext = true

    def channel(self, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
        return secure_aio_channel(self.target, self.tls, self.name, options)
