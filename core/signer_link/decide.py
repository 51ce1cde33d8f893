"""Why the signer link is down, from what a call to the signer answered. Pure.

gRPC Python reports every connection and TLS handshake failure as UNAVAILABLE with
a free-text description (C-core's), so the cause is read from that text; what is
not recognised keeps the text and is retried as `unavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never


class Cause(StrEnum):
    CONNECTION_REFUSED = "connection_refused"
    TIMEOUT = "timeout"
    TLS_SERVER_NAME = "tls_server_name_mismatch"
    TLS_UNTRUSTED = "tls_certificate_untrusted"
    TLS_HANDSHAKE = "tls_handshake_failed"
    CONNECTION_CLOSED = "connection_closed"
    CALLER_NOT_ALLOWED = "caller_not_allowed"
    HOT_KEY_NOT_FOUND = "hot_key_not_found"
    NOT_SERVING = "signer_not_serving"
    UNAVAILABLE = "unavailable"
    SIGNER_ERROR = "signer_error"


# What waiting can cure (a signer starting, restarting, or its token coming back);
# a certificate, a name or an allowlist is configuration: the core exits at once.
RETRIED = frozenset(
    {
        Cause.CONNECTION_REFUSED,
        Cause.TIMEOUT,
        Cause.CONNECTION_CLOSED,
        Cause.NOT_SERVING,
        Cause.UNAVAILABLE,
        Cause.SIGNER_ERROR,
    }
)
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class LinkDown:
    cause: Cause
    # What the signer or gRPC said, bounded (grpc's text, the refusal's reason and message).
    detail: str

    @property
    def retried(self) -> bool:
        return self.cause in RETRIED

    @property
    def explanation(self) -> str:
        return explain(self.cause)


def explain(cause: Cause) -> str:
    """One sentence an operator acts on."""
    match cause:
        case Cause.CONNECTION_REFUSED:
            return "nothing listens at signer.target: is kassa-signer running there?"
        case Cause.TIMEOUT:
            return "the signer did not answer in time (network, firewall, or a stuck signer)"
        case Cause.TLS_SERVER_NAME:
            return (
                "the signer's certificate does not carry the name the core expects "
                "(signer.server_name, else the host of signer.target)"
            )
        case Cause.TLS_UNTRUSTED:
            return "the signer's certificate does not verify against signer.ca_file"
        case Cause.TLS_HANDSHAKE:
            return "the TLS handshake with the signer failed"
        case Cause.CONNECTION_CLOSED:
            return (
                "the signer closed the connection: does its [tls] ca_file trust the core's "
                "signer.cert_file, and does it speak TLS?"
            )
        case Cause.CALLER_NOT_ALLOWED:
            return (
                "the signer refuses this caller: the subject of signer.cert_file is not in "
                "the signer's [[callers]] tls_subject"
            )
        case Cause.HOT_KEY_NOT_FOUND:
            return "the signer has no key payouts.hot_key_id (kassa-signer keys list)"
        case Cause.NOT_SERVING:
            return "the signer reports NOT_SERVING: its token or audit store is unusable"
        case Cause.UNAVAILABLE:
            return "the signer is unreachable"
        case Cause.SIGNER_ERROR:
            return "the signer answered with an error"
        case _:
            assert_never(cause)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def classify(code: str, details: str, reason: str = "") -> LinkDown:
    """The cause of a failed call: `code` is the grpc.StatusCode's name, `details` its
    text, `reason` the ErrorInfo reason of a refusal ("" without one)."""
    assert code != "OK", "an answer is not a failure"
    text = details.lower()
    detail = _bounded(f"{reason}: {details}" if reason else details)
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        cause = Cause.CALLER_NOT_ALLOWED
    elif code == "NOT_FOUND" and reason == "KEY_NOT_FOUND":
        cause = Cause.HOT_KEY_NOT_FOUND
    elif code == "DEADLINE_EXCEEDED":
        cause = Cause.TIMEOUT
    elif code != "UNAVAILABLE":
        cause = Cause.SIGNER_ERROR
    elif "connection refused" in text:
        cause = Cause.CONNECTION_REFUSED
    elif "hostname verification" in text or "peer name" in text:
        cause = Cause.TLS_SERVER_NAME
    elif "handshake" in text and ("certificate" in text or "verify" in text):
        cause = Cause.TLS_UNTRUSTED
    elif "handshake" in text or "tsi_" in text:
        cause = Cause.TLS_HANDSHAKE
    elif "socket closed" in text or "connection reset" in text or "end of tcp stream" in text:
        cause = Cause.CONNECTION_CLOSED
    elif "deadline" in text or "timed out" in text or "timeout" in text:
        cause = Cause.TIMEOUT
    else:
        cause = Cause.UNAVAILABLE
    return LinkDown(cause, detail)


def not_serving(status: str) -> LinkDown:
    """The signer answered its health check with `status` (a HealthCheckResponse name)."""
    assert status != "SERVING"
    return LinkDown(Cause.NOT_SERVING, _bounded(f"health: {status}"))
