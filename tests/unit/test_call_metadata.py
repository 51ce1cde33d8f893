"""A call's invocation metadata is read once (core.telemetry.rpc.invocation_metadata):
RpcMetrics reads it when the call starts and the edge's authentication in the same
call reuses it; a call never sees another call's, and outside a wrapped call the
context is asked as before."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from core.api.auth import Authenticator, Principal
from core.errors import Refusal
from core.merchants.credentials import new_key
from core.merchants.store import ApiKey
from core.telemetry import rpc


class Context:
    """What RpcMetrics and the Authenticator ask of grpc's servicer context."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata
        self.reads = 0
        self.trailers: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        self.reads += 1
        return self.metadata

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailers = tuple(metadata)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.trailers

    def code(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def auth_context(self) -> dict[str, Any]:
        return {}


class Keys:
    def __init__(self, *keys: ApiKey) -> None:
        self.rows = {k.id: k for k in keys}

    async def get(self, key_id: str) -> ApiKey | None:
        return self.rows.get(key_id)


def _key(scope: str) -> tuple[ApiKey, str]:
    key_id, token, secret_hash = new_key()
    return ApiKey(key_id, None, secret_hash, frozenset({scope}), None), token


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"), ("user-agent", "test"))


def test_concurrent_calls_each_authenticate_with_their_own_metadata_read_once() -> None:
    (one, one_token), (two, two_token) = _key("ledger:read"), _key("ledger:write")
    auth = Authenticator(Keys(one, two))  # type: ignore[arg-type]
    seen: dict[int, Principal] = {}

    async def handler(request: Any, context: Any) -> None:
        await asyncio.sleep(0)  # the other call runs in between
        seen[request] = await auth.principal(context)

    behaviour = rpc.RpcMetrics().wrap(
        grpc.unary_unary_rpc_method_handler(handler), "/kassa.test.v1.Test/Call"
    )

    async def main() -> list[Context]:
        contexts = [Context(_bearer(one_token)), Context(_bearer(two_token))]
        await asyncio.gather(
            *(asyncio.create_task(behaviour.unary_unary(i, c)) for i, c in enumerate(contexts))
        )
        return contexts

    contexts = asyncio.run(main())
    assert seen[0].key_id == one.id and seen[1].key_id == two.id
    assert [c.reads for c in contexts] == [1, 1]  # RpcMetrics' read, reused by the edge


def test_outside_a_wrapped_call_the_context_is_asked() -> None:
    key, token = _key("ledger:read")
    auth = Authenticator(Keys(key))  # type: ignore[arg-type]
    started, other = Context(_bearer(token)), Context(())

    async def main() -> None:
        rpc._begin(started)
        assert rpc.invocation_metadata(started) == started.metadata
        assert rpc.invocation_metadata(other) == ()
        assert other.reads == 1  # not the started call's metadata
        with pytest.raises(Refusal) as refused:
            await auth.principal(other)
        assert refused.value.reason == "CREDENTIALS_MISSING"
        assert (await auth.principal(started)).key_id == key.id

    asyncio.run(main())
    assert started.reads == 1
