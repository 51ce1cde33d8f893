"""Refusals: the errors that domain logic raises, with a reason a caller can act on.

Below the API nothing knows about gRPC: logic raises a `Refusal` (a `Code`,
a stable `reason`, a message, field violations and metadata) and
core/api/errors.py maps it to a google.rpc.Status once, at the edge. The
constructors here (`invalid`, `not_found`, `exists`, `precondition`) are
what most code should call.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Protocol

DOMAIN = "kassa.core"


class Code(enum.Enum):
    """The kinds of refusal; names are those of google.rpc.Code (mapped by name at the edge)."""

    INVALID_ARGUMENT = enum.auto()
    NOT_FOUND = enum.auto()
    ALREADY_EXISTS = enum.auto()
    FAILED_PRECONDITION = enum.auto()
    PERMISSION_DENIED = enum.auto()
    UNAUTHENTICATED = enum.auto()
    RESOURCE_EXHAUSTED = enum.auto()
    # Not a refusal of the request: the edge (core/api/errors.py) answers it
    # for anything unexpected, with an incident id and nothing else.
    INTERNAL = enum.auto()
    # A dependency (an adapter, the signer) did not answer; retrying later may work.
    UNAVAILABLE = enum.auto()


class _Named(Protocol):
    """A code from another enum with the same member names (grpc.StatusCode)."""

    @property
    def name(self) -> str: ...


class Refusal(Exception):
    """A request the core refuses, and why; the edge turns it into a status."""

    def __init__(
        self,
        code: Code | _Named,
        reason: str,
        message: str,
        violations: Sequence[tuple[str, str]] = (),
        metadata: Mapping[str, str] | None = None,
        domain: str = DOMAIN,
    ) -> None:
        super().__init__(message)
        # Accepting grpc.StatusCode by name keeps callers that still say
        # grpc.StatusCode.X working (mapped by member name).
        self.code = code if isinstance(code, Code) else Code[code.name]
        assert reason and reason == reason.upper(), reason
        self.reason = reason
        self.message = message
        self.violations = list(violations)
        self.metadata = dict(metadata or {})
        self.domain = domain


def invalid(violations: Sequence[tuple[str, str]], domain: str = DOMAIN) -> Refusal:
    """Bad input: every field that is wrong, with what it must be."""
    assert violations, "an invalid request names at least one field"
    fields = ", ".join(f for f, _ in violations)
    return Refusal(
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        f"invalid request: {fields}",
        violations,
        domain=domain,
    )


def not_found(what: str, name: str) -> Refusal:
    return Refusal(
        Code.NOT_FOUND,
        f"{what.upper()}_NOT_FOUND",
        f"{name} not found",
        metadata={"name": name},
    )


def exists(reason: str, message: str, **metadata: str) -> Refusal:
    return Refusal(Code.ALREADY_EXISTS, reason, message, metadata=metadata)


def precondition(reason: str, message: str, **metadata: str) -> Refusal:
    return Refusal(Code.FAILED_PRECONDITION, reason, message, metadata=metadata)


def unavailable(reason: str, message: str, **metadata: str) -> Refusal:
    """Cannot be done now for a reason outside the request; the same request may succeed later."""
    return Refusal(Code.UNAVAILABLE, reason, message, metadata=metadata)


def denied(reason: str, message: str, **metadata: str) -> Refusal:
    return Refusal(Code.PERMISSION_DENIED, reason, message, metadata=metadata)


def unauthenticated(reason: str, message: str) -> Refusal:
    return Refusal(Code.UNAUTHENTICATED, reason, message)
