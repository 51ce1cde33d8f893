"""mTLS for the signer's gRPC server: client certificates required and checked against the CA,
TLS 1.3 only, and the verified subject handed to the pipeline as the caller's transport identity.

gRPC Python cannot set a minimum TLS version, so a TLS 1.2 handshake still
completes; every call on such a connection is then refused before any handler
runs (Sign refuses it itself, so the refusal is audited).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from signer.api.errors import Refusal
from signer.api.reasons import refusal
from signer.config import TlsConfig

TLS_VERSION = b"TLSv1.3"


def server_credentials(tls: TlsConfig) -> Any:
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=tls.ca_file.read_bytes(),
        require_client_auth=True,
    )


def peer_subject(context: Any) -> str | None:
    """The verified client certificate subject, e.g. "CN=kassa-core"; None without TLS."""
    values = context.auth_context().get("x509_subject")
    return values[0].decode() if values else None


def tls_version_ok(context: Any) -> bool:
    return bool(context.auth_context().get("ssl_tls_version") == [TLS_VERSION])


def peer_identity(context: Any) -> tuple[str | None, bool]:
    """(peer_subject, tls_version_ok) from one read of the auth context."""
    auth = context.auth_context()
    subject = auth.get("x509_subject")
    return (
        subject[0].decode() if subject else None,
        bool(auth.get("ssl_tls_version") == [TLS_VERSION]),
    )


def version_refusal() -> Refusal:
    return refusal("TLS_VERSION_REFUSED", "the signer accepts TLS 1.3 only")


class Tls13Only(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call not on a TLS 1.3 connection, except methods that check it themselves."""

    def __init__(self, self_checking: set[str]) -> None:
        self._self_checking = self_checking

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or details.method in self._self_checking:
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
                    _guarded(inner, kind.endswith("stream")),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


def _guarded(inner: Callable[..., Any], streams: bool) -> Callable[..., Any]:
    async def refuse(context: Any) -> None:
        status = version_refusal().to_status()
        await context.abort(status.code, status.details, status.trailing_metadata)

    if streams:

        async def stream(request: Any, context: Any) -> Any:
            if not tls_version_ok(context):
                await refuse(context)
            async for item in inner(request, context):
                yield item

        return stream

    async def unary(request: Any, context: Any) -> Any:
        if not tls_version_ok(context):
            await refuse(context)
        return await inner(request, context)

    return unary
