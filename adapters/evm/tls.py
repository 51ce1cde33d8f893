"""The adapter's server side of its mutual-TLS link with the core.

A caller must complete a TLS handshake with a client certificate from the
configured CA (else no call at all), and each call must come on a TLS 1.3
connection from a certificate whose subject is in server.allowed_callers
(the core's, "CN=kassa-core"); anyone else — another service holding a
certificate of the same CA included — is refused PERMISSION_DENIED with the
reason CALLER_NOT_ALLOWED before any handler runs, Broadcast included.

gRPC Python cannot set a minimum TLS version, so a TLS 1.2 handshake still
completes; its calls are refused (TLS_VERSION_REFUSED).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from adapters.evm.config import ConfigError, TlsFiles
from adapters.evm.errors import ServiceError
from adapters.evm.secretfiles import SecretFileError
from adapters.evm.secretfiles import read_secret_file as _read_secret_file

TLS_VERSION = b"TLSv1.3"


@dataclass(frozen=True)
class ServerTls:
    cert: bytes
    key: bytes = field(repr=False)
    client_ca: bytes
    allowed_callers: frozenset[str]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def read_secret_file(path: Path, what: str) -> bytes:
    """A private key file; refused (ConfigError) when group or others may read it."""
    try:
        return _read_secret_file(path, what)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from None


def load(files: TlsFiles) -> ServerTls:
    return ServerTls(
        cert=_read(files.cert_file, "server.cert_file"),
        key=read_secret_file(files.key_file, "server.key_file"),
        client_ca=_read(files.client_ca_file, "server.client_ca_file"),
        allowed_callers=frozenset(files.allowed_callers),
    )


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.client_ca, require_client_auth=True
    )


def refusal(context: Any, allowed: frozenset[str]) -> ServiceError | None:
    """Why this call may not proceed, or None for an allowed caller on TLS 1.3."""
    auth = context.auth_context()
    subject_values = auth.get("x509_subject")
    subject = subject_values[0].decode() if subject_values else ""
    if auth.get("ssl_tls_version") != [TLS_VERSION]:
        return ServiceError(
            grpc.StatusCode.PERMISSION_DENIED,
            "TLS_VERSION_REFUSED",
            "the adapter accepts TLS 1.3 only",
        )
    if subject not in allowed:
        return ServiceError(
            grpc.StatusCode.PERMISSION_DENIED,
            "CALLER_NOT_ALLOWED",
            f"the caller {subject or '(no certificate)'} is not allowed by this adapter "
            "(server.allowed_callers)",
            metadata={"subject": subject},
        )
    return None


class AllowedCallersOnly(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call, of every service, from a caller not in the allowlist."""

    def __init__(self, allowed: frozenset[str]) -> None:
        assert allowed, "an adapter that allows no caller serves nobody"
        self.allowed = allowed

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return handler
        for kind, factory in (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        ):
            inner = getattr(handler, kind)
            if inner is not None:
                return factory(
                    self._guarded(inner),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _guarded(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        allowed = self.allowed

        async def refuse_if_not_allowed(context: Any) -> None:
            refused = refusal(context, allowed)
            if refused is not None:
                await context.abort_with_status(refused.to_status())

        # Streaming handlers either yield (async generators) or call context.write.
        if inspect.isasyncgenfunction(inner):

            async def stream(request: Any, context: Any) -> Any:
                await refuse_if_not_allowed(context)
                async for item in inner(request, context):
                    yield item

            return stream

        async def call(request: Any, context: Any) -> Any:
            await refuse_if_not_allowed(context)
            return await inner(request, context)

        return call
