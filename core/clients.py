"""Client-side helpers: a gRPC channel to the core's API, over TLS, that sends an
API key on every call (and a client certificate where the core requires one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True)
class ApiTls:
    """How a client checks the core: the CA its certificate chains to (None: the
    system's roots), the name the certificate must carry when the target is an
    address (server_name), and a client certificate where the core asks for one."""

    ca: bytes | None = None
    server_name: str = ""
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_files(
        cls,
        ca_file: Path | None,
        server_name: str = "",
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> ApiTls:
        if (cert_file is None) != (key_file is None):
            raise ValueError("a client certificate and its key go together")
        return cls(
            ca_file.read_bytes() if ca_file else None,
            server_name,
            cert_file.read_bytes() if cert_file else None,
            key_file.read_bytes() if key_file else None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def api_channel(
    target: str, tls: ApiTls | None, options: list[tuple[str, Any]] | None = None
) -> grpc.Channel:
    """A channel to the core; tls None is plaintext, for a core with server.dev_plaintext."""
    options = list(options or [])
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options + tls.options())


def api_aio_channel(
    target: str, tls: ApiTls | None, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    options = list(options or [])
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options + tls.options())


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _with_token(self, details: Any) -> Any:
        metadata = tuple(details.metadata or ()) + self._metadata
        return (
            details._replace(metadata=metadata)
            if hasattr(details, "_replace")
            else _Details(details, metadata)
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._with_token(details), request)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = base.compression


def authed_channel(target: str, token: str, tls: ApiTls | None) -> grpc.Channel:
    """A channel whose calls carry `authorization: Bearer <token>`; over TLS unless tls is None."""
    return grpc.intercept_channel(api_channel(target, tls), _BearerToken(token))
