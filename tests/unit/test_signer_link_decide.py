"""Why the signer link is down, from what gRPC said (core/signer_link/decide.py): the
texts below are what grpcio's C core answered against a real signer (wrong CA, wrong
name, nothing listening, the signer closing on an untrusted client certificate); the
integration tests (tests/integration/test_core_signer_link.py) check them end to end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.signer_link.decide import (
    MAX_DETAIL_CHARS,
    RETRIED,
    Cause,
    classify,
    explain,
    not_serving,
)

REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:46093: "
    "Failed to connect to remote host: Connection refused"
)
WRONG_CA = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:37209: Tls "
    "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1a000064:ECDSA "
    "routines:OPENSSL_internal:BAD_SIGNATURE: certificate signature failure: OK"
)
VERIFY_FAILED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.5:50061: Tls "
    "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"
)
WRONG_NAME = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:37209: Custom "
    "verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed."
)
CLOSED = (
    "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed"
)


@pytest.mark.parametrize(
    ("code", "details", "reason", "cause"),
    [
        ("UNAVAILABLE", REFUSED, "", Cause.CONNECTION_REFUSED),
        ("UNAVAILABLE", WRONG_CA, "", Cause.TLS_UNTRUSTED),
        ("UNAVAILABLE", VERIFY_FAILED, "", Cause.TLS_UNTRUSTED),
        ("UNAVAILABLE", WRONG_NAME, "", Cause.TLS_SERVER_NAME),
        (
            "UNAVAILABLE",
            "failed to connect to all addresses; Peer name signer.x is not in peer certificate",
            "",
            Cause.TLS_SERVER_NAME,
        ),
        ("UNAVAILABLE", CLOSED, "", Cause.CONNECTION_CLOSED),
        ("UNAVAILABLE", "DNS resolution failed for signer.internal:50061", "", Cause.UNAVAILABLE),
        ("DEADLINE_EXCEEDED", "Deadline Exceeded", "", Cause.TIMEOUT),
        (
            "PERMISSION_DENIED",
            "key lookups are answered only to allowlisted callers",
            "CALLER_NOT_ALLOWED",
            Cause.CALLER_NOT_ALLOWED,
        ),
        ("PERMISSION_DENIED", "TLS 1.3 only", "TLS_VERSION_REFUSED", Cause.CALLER_NOT_ALLOWED),
        ("NOT_FOUND", "no key 'hot-9'", "KEY_NOT_FOUND", Cause.HOT_KEY_NOT_FOUND),
        ("INTERNAL", "token error", "", Cause.SIGNER_ERROR),
    ],
)
def test_each_answer_has_its_cause(code: str, details: str, reason: str, cause: Cause) -> None:
    down = classify(code, details, reason)
    assert down.cause == cause
    assert details[:40] in down.detail and (reason == "" or down.detail.startswith(reason))


def test_configuration_is_never_waited_on_and_absence_always_is() -> None:
    for cause in (
        Cause.TLS_SERVER_NAME,
        Cause.TLS_UNTRUSTED,
        Cause.TLS_HANDSHAKE,
        Cause.CALLER_NOT_ALLOWED,
        Cause.HOT_KEY_NOT_FOUND,
    ):
        assert cause not in RETRIED
    for cause in (Cause.CONNECTION_REFUSED, Cause.TIMEOUT, Cause.NOT_SERVING, Cause.UNAVAILABLE):
        assert cause in RETRIED
    assert not_serving("NOT_SERVING").cause == Cause.NOT_SERVING
    assert not_serving("NOT_SERVING").retried


CODES = [
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "INTERNAL",
    "UNAVAILABLE",
    "UNAUTHENTICATED",
]


@given(st.sampled_from(CODES), st.text(max_size=2000), st.sampled_from(["", "KEY_NOT_FOUND", "X"]))
def test_every_failure_has_a_cause_an_explanation_and_a_bounded_detail(
    code: str, details: str, reason: str
) -> None:
    down = classify(code, details, reason)
    assert isinstance(down.cause, Cause)
    assert explain(down.cause) and down.explanation == explain(down.cause)
    assert len(down.detail) <= MAX_DETAIL_CHARS
    # Only the signer's own refusals say "not allowed"; a transport error never does.
    if code not in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        assert down.cause != Cause.CALLER_NOT_ALLOWED
    if code != "UNAVAILABLE":
        assert down.cause not in (
            Cause.CONNECTION_REFUSED,
            Cause.TLS_SERVER_NAME,
            Cause.TLS_UNTRUSTED,
            Cause.TLS_HANDSHAKE,
            Cause.CONNECTION_CLOSED,
        )


def test_ok_is_not_a_failure() -> None:
    with pytest.raises(AssertionError):
        classify("OK", "")
