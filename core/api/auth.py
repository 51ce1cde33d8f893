"""Who is calling: API keys sent as `authorization: Bearer kassa_<id>_<secret>`.

Secrets are 256-bit random values, so a plain SHA-256 is a sound verifier and
the table holds nothing that lets anyone call. Keys are cached briefly to keep
a database round trip off every call; a revocation takes effect within
`cache_ttl_s`.
"""

from __future__ import annotations

import contextvars
import hmac
import time
from dataclasses import dataclass

import grpc

from core import names
from core.errors import Code, Refusal
from core.merchants.credentials import SCOPES, parse_token, secret_hash
from core.merchants.store import ApiKey, ApiKeys
from core.telemetry.rpc import invocation_metadata


@dataclass(frozen=True)
class Principal:
    key_id: str
    merchant_id: str | None  # None: a platform key, for every merchant
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return names.api_key(self.merchant_id or "-", self.key_id)


# The principal of the call this task serves: the edge (core/api/guard.py)
# authenticates before validating, and the handler's own call reuses it.
_CALLER: contextvars.ContextVar[tuple[object, Principal] | None] = contextvars.ContextVar(
    "kassa_caller", default=None
)


def current_key_id() -> str:
    """The key id of the caller this task serves ("" outside an authenticated call)."""
    known = _CALLER.get()
    return known[1].key_id if known is not None else ""


def current_actor() -> str | None:
    """The API key this task's call authenticated as (for the access log), or None."""
    known = _CALLER.get()
    return known[1].actor if known is not None else None


def _unauthenticated(reason: str, message: str) -> Refusal:
    return Refusal(Code.UNAUTHENTICATED, reason, message)


class Authenticator:
    def __init__(self, keys: ApiKeys, cache_ttl_s: float = 5.0) -> None:
        self.keys = keys
        self.cache_ttl_s = cache_ttl_s
        # Each key's row with the Principal it makes, built once per fetch instead of on
        # every call (a frozen dataclass: ~0.8 us a call).
        self._cache: dict[str, tuple[float, ApiKey | None, Principal | None]] = {}
        # The authorization headers already verified against their key's cached row: the
        # row's fetch time (so an entry expires with the row: the same revocation delay)
        # and the Principal. Only a header that passed every check (token, key, secret,
        # not revoked) is kept, so a caller cannot fill it with guesses; a hit skips the
        # token's parse, the SHA-256 and the digest compare (the whole check from the
        # header on: ~7 -> ~1 us a call in a loop). A lookup's time tells a caller
        # nothing the answer does not: a miss takes the full check, and a dict compares
        # strings only after their hashes (SipHash, keyed per process) match. The keys
        # are bearer secrets in this process's memory, as every call's metadata is.
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def _key(self, key_id: str) -> tuple[float, ApiKey | None, Principal | None]:
        """(when the row was fetched, the row, its Principal)."""
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.cache_ttl_s:
            return cached
        row = await self.keys.get(key_id)
        principal = None if row is None else Principal(row.id, row.merchant_id, row.scopes)
        if len(self._cache) > 10_000:
            self._cache.clear()
        fetched = self._cache[key_id] = (now, row, principal)
        return fetched

    async def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        principal = self.principal_at_once(context)
        if principal is None:
            principal = await self._authenticate(_authorization(context))
            _CALLER.set((context, principal))
        return principal

    def principal_at_once(self, context: grpc.aio.ServicerContext) -> Principal | None:
        """The caller when known without awaiting (this call's, or a header verified
        within the TTL), remembered for the call; else None: `principal` decides."""
        known = _CALLER.get()
        if known is not None and known[0] is context:
            return known[1]
        verified = self._verified.get(_authorization(context))
        if verified is None or time.monotonic() - verified[0] >= self.cache_ttl_s:
            return None
        _CALLER.set((context, verified[1]))
        return verified[1]

    async def _authenticate(self, header: str) -> Principal:
        if not header:
            raise _unauthenticated(
                "CREDENTIALS_MISSING", "send an API key as 'authorization: Bearer kassa_…'"
            )
        token = parse_token(header.removeprefix("Bearer ").strip())
        fetched_at, row, principal = await self._key(token[0]) if token else (0.0, None, None)
        if (
            token is None
            or row is None
            or principal is None
            or not hmac.compare_digest(row.secret_hash, secret_hash(token[1]))
        ):
            raise _unauthenticated("CREDENTIALS_INVALID", "the API key is not valid")
        if row.revoke_time is not None:
            raise _unauthenticated("CREDENTIALS_REVOKED", "the API key was revoked")
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[header] = (fetched_at, principal)
        return principal

    async def require(
        self, context: grpc.aio.ServicerContext, scope: str, merchant_id: str | None
    ) -> Principal:
        """The caller, if it holds `scope` for `merchant_id` (None: platform-wide)."""
        principal = await self.principal(context)
        authorize(principal, scope, merchant_id)
        return principal


def _authorization(context: grpc.aio.ServicerContext) -> str:
    """The call's authorization header ("" when missing or not text), as RpcMetrics read
    the metadata for this call (not rebuilt by grpc a second time); the last one when
    sent twice."""
    header: str | bytes = ""
    for key, value in invocation_metadata(context):
        if key == "authorization":
            header = value
    return header if isinstance(header, str) else ""  # only a "-bin" key's value is bytes


def authorize(principal: Principal, scope: str, merchant_id: str | None) -> None:
    """Refuses unless `principal` holds `scope` for `merchant_id` (None: platform-wide)."""
    assert scope in SCOPES, scope
    if scope not in principal.scopes:
        raise Refusal(
            Code.PERMISSION_DENIED,
            "SCOPE_MISSING",
            f"the API key lacks the scope {scope}",
            metadata={"scope": scope},
        )
    if principal.merchant_id is not None and principal.merchant_id != merchant_id:
        raise Refusal(
            Code.PERMISSION_DENIED,
            "MERCHANT_FORBIDDEN",
            "the API key belongs to another merchant",
        )
