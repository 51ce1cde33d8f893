"""request_id idempotency (AIP-155), one behaviour for every write.

A write that carries a request_id is answered once: a retry with the same id
and the same body gets the first answer again (the resource as it now
stands, as CreateInvoice always did), the same id with another body is
refused with REQUEST_ID_REUSED and changes nothing.

  request_hash  what identifies a body (SHA-256 of its deterministic bytes)
  decide        the pure decision, replay or reused, given the first body's hash
  refuse        the error for a reused id
  recall / remember
                the store for writes that have no row of their own to keep
                the id on (cancel, mark); creates keep the id and hash on the
                row they create

Payout idempotency lives with the payouts (core/payouts/payouts.py).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Protocol, assert_never

import asyncpg

from core import names, reasons
from core.errors import Code, Refusal


def request_id_of(value: str, violations: list[tuple[str, str]]) -> str | None:
    """The request_id of a request (None if absent); a malformed one is a violation."""
    if value and not names.is_request_id(value):
        violations.append(("request_id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -"))
    return value or None


class _Serializable(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


def request_hash(request: _Serializable | bytes) -> bytes:
    """The fingerprint of a request body (a protobuf message or its bytes)."""
    body = request if isinstance(request, bytes) else request.SerializeToString(deterministic=True)
    return hashlib.sha256(body).digest()


class Outcome(enum.Enum):
    REPLAY = "replay"  # the same request again: answer as the first time
    REUSED = "reused"  # the id with another body: refuse, change nothing


def decide(first_hash: bytes | None, incoming_hash: bytes) -> Outcome:
    """For a request_id already used: replay or reused.

    `first_hash` None is a record written before hashes were kept (merchants
    and webhook endpoints created before migration 0009): its body cannot be
    compared, so the retry is taken at its word, as it was then.
    """
    assert len(incoming_hash) == 32, incoming_hash
    if first_hash is None or bytes(first_hash) == incoming_hash:
        return Outcome.REPLAY
    return Outcome.REUSED


def refuse(request_id: str, resource: str) -> Refusal:
    return Refusal(
        Code.ALREADY_EXISTS,
        reasons.REQUEST_ID_REUSED,
        f"request_id {request_id!r} was used for a different request",
        metadata={"request_id": request_id, "resource": resource},
    )


def check(first_hash: bytes | None, incoming_hash: bytes, request_id: str, resource: str) -> None:
    """Raises REQUEST_ID_REUSED unless the request is a replay of the first."""
    outcome = decide(first_hash, incoming_hash)
    match outcome:
        case Outcome.REPLAY:
            return
        case Outcome.REUSED:
            raise refuse(request_id, resource)
        case _:
            assert_never(outcome)


@dataclass(frozen=True)
class Key:
    """Who used which request_id for which operation."""

    scope: str  # the operation, e.g. "invoices.cancel"
    owner: str  # whose id space (a merchant id)
    request_id: str
    request_hash: bytes


@dataclass(frozen=True)
class First:
    request_hash: bytes
    resource: str  # the name of what the first answer returned


async def recall(conn: asyncpg.Connection, key: Key) -> First | None:
    row = await conn.fetchrow(
        """SELECT request_hash, resource FROM request_ids
            WHERE scope = $1 AND owner = $2 AND request_id = $3""",
        key.scope,
        key.owner,
        key.request_id,
    )
    return None if row is None else First(bytes(row["request_hash"]), row["resource"])


async def remember(conn: asyncpg.Connection, key: Key, resource: str) -> None:
    """Records the first answer in the caller's transaction; a concurrent first
    use of the same id raises UniqueViolationError (the caller recalls it)."""
    await conn.execute(
        """INSERT INTO request_ids (scope, owner, request_id, request_hash, resource)
           VALUES ($1, $2, $3, $4, $5)""",
        key.scope,
        key.owner,
        key.request_id,
        key.request_hash,
        resource,
    )
