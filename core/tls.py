"""TLS of the core's links: its public API (server side) and its adapters (client side).

The API is TLS unless a development flag says otherwise; client certificates
from a configured CA may be required in addition to API keys. Every adapter
link is mutual TLS: the core shows its client certificate and accepts only
an adapter whose certificate, from the configured CA, names the identity
configured for that chain (`adapter_name`), whatever address answers.

gRPC Python cannot set a minimum TLS version (docs/threat-model.md), so a
TLS 1.2 handshake still completes; every call on such a connection is then
refused before any handler runs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from core.secretfiles import SecretError, read_secret_file
from core.telemetry.rpc import RequestIdClient

log = logging.getLogger("kassa.core.tls")
TLS_VERSION = b"TLSv1.3"


@dataclass(frozen=True)
class ServerTls:
    """The API's certificate and key; with client_ca, callers must show a certificate from it."""

    cert: bytes
    key: bytes = field(repr=False)
    client_ca: bytes | None = None


@dataclass(frozen=True)
class ClientTls:
    """The CA that server certificates must chain to, and our client certificate and key."""

    ca: bytes
    cert: bytes
    key: bytes = field(repr=False)


def _read(base: Path, table: dict[str, Any], key: str, where: str) -> bytes:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise SecretError(f"{where}.{key} is required (a PEM file)")
    path = base / value
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SecretError(f"{where}.{key}: cannot read {path}: {exc.strerror}") from None


def _key(base: Path, table: dict[str, Any], where: str) -> bytes:
    value = table.get("key_file")
    if not isinstance(value, str) or not value:
        raise SecretError(f"{where}.key_file is required (a PEM private key, mode 0600)")
    return read_secret_file(base / value, f"{where}.key_file")


def server_tls(table: dict[str, Any], where: str, base: Path) -> ServerTls | None:
    """[server]: cert_file and key_file, optional client_ca_file; None only with
    dev_plaintext = true (a development flag: API keys then cross the network in clear)."""
    if table.get("dev_plaintext", False) is True:
        if any(k in table for k in ("cert_file", "key_file", "client_ca_file")):
            raise SecretError(f"{where}.dev_plaintext = true and TLS files: choose one")
        return None
    if "cert_file" not in table:
        raise SecretError(
            f"{where}.cert_file and {where}.key_file are required: the API speaks TLS "
            f"(set {where}.dev_plaintext = true only for local development)"
        )
    client_ca = _read(base, table, "client_ca_file", where) if "client_ca_file" in table else None
    return ServerTls(_read(base, table, "cert_file", where), _key(base, table, where), client_ca)


def client_tls(table: dict[str, Any], where: str, base: Path) -> ClientTls | None:
    """[adapters]: ca_file, cert_file, key_file; None only with dev_plaintext = true."""
    if table.get("dev_plaintext", False) is True:
        if any(k in table for k in ("ca_file", "cert_file", "key_file")):
            raise SecretError(f"{where}.dev_plaintext = true and TLS files: choose one")
        return None
    if "ca_file" not in table:
        raise SecretError(
            f"{where}.ca_file, cert_file and key_file are required: adapter links are "
            f"mutual TLS (set {where}.dev_plaintext = true only for local development)"
        )
    return ClientTls(
        _read(base, table, "ca_file", where),
        _read(base, table, "cert_file", where),
        _key(base, table, where),
    )


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)],
        root_certificates=tls.client_ca,
        require_client_auth=tls.client_ca is not None,
    )


def secure_aio_channel(
    target: str,
    tls: ClientTls | None,
    server_name: str,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.aio.Channel:
    """A channel that accepts only a server certificate from tls.ca naming server_name."""
    options = list(options or [])
    # Every call carries the current request id (x-request-id) to the adapter or signer.
    interceptors = [RequestIdClient()]
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    credentials = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
    # The name checked against the certificate, whatever the address: the identity.
    options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def tls_version_ok(context: Any) -> bool:
    return bool(context.auth_context().get("ssl_tls_version") == [TLS_VERSION])


class Tls13Only(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call that is not on a TLS 1.3 connection (PERMISSION_DENIED)."""

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return handler
        return _guard(handler, tls_version_ok, "the core accepts TLS 1.3 only")


def _guard(handler: Any, allowed: Callable[[Any], bool], message: str) -> Any:
    """The handler, behind a check of the call's context."""

    async def refuse(context: Any) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    def unary(inner: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            if not allowed(context):
                await refuse(context)
            return await inner(request, context)

        return call

    def streaming(inner: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            if not allowed(context):
                await refuse(context)
            async for item in inner(request, context):
                yield item

        return call

    for kind, factory in (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    ):
        inner = getattr(handler, kind)
        if inner is not None:
            # Streaming handlers either yield (async generators) or call context.write.
            wrap = streaming if inspect.isasyncgenfunction(inner) else unary
            return factory(
                wrap(inner),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
