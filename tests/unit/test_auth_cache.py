"""Authentication's cache of verified authorization headers (core.api.auth): a header
seen valid skips the token's parse and hash until its key's row is due again, and
answers exactly as the full check does, whatever the headers, rows and time."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.api import auth as auth_module
from core.api.auth import Authenticator, Principal
from core.errors import Refusal
from core.merchants import credentials
from core.merchants.store import ApiKey

TTL_S = 5.0


class Context:
    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self.metadata


class Keys:
    def __init__(self, *keys: ApiKey) -> None:
        self.rows = {k.id: k for k in keys}
        self.gets = 0

    async def get(self, key_id: str) -> ApiKey | None:
        self.gets += 1
        return self.rows.get(key_id)


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def monotonic(self) -> float:
        return self.now_s


def _answer(auth: Authenticator, metadata: tuple[tuple[str, str | bytes], ...]) -> object:
    """The principal a new call with `metadata` gets, or its refusal's reason."""

    async def one() -> object:
        try:
            return await auth.principal(Context(metadata))  # type: ignore[arg-type]
        except Refusal as refused:
            return refused.reason

    return asyncio.run(one())


def _key() -> tuple[ApiKey, str]:
    key_id, token, secret_hash = credentials.new_key()
    return ApiKey(key_id, "m1", secret_hash, frozenset({"ledger:read"}), None), token


def test_a_verified_header_is_not_hashed_again_until_its_row_is_due() -> None:
    key, token = _key()
    keys, clock = Keys(key), Clock()
    auth = Authenticator(keys, TTL_S)  # type: ignore[arg-type]
    header = (("authorization", f"Bearer {token}"),)
    with (
        mock.patch.object(auth_module, "time", clock),
        mock.patch.object(auth_module, "secret_hash", wraps=credentials.secret_hash) as hashed,
    ):
        first = _answer(auth, header)
        assert isinstance(first, Principal) and first.key_id == key.id
        clock.now_s += TTL_S - 0.1
        assert _answer(auth, header) == first
        assert hashed.call_count == 1 and keys.gets == 1
        # Revoked meanwhile: trusted until its row is due, as the row cache was.
        keys.rows[key.id] = dataclasses.replace(key, revoke_time=datetime.now(UTC))
        assert _answer(auth, header) == first
        clock.now_s += 0.1
        assert _answer(auth, header) == "CREDENTIALS_REVOKED"
        assert _answer(auth, header) == "CREDENTIALS_REVOKED"
        assert hashed.call_count == 3 and keys.gets == 2


def test_only_the_exact_header_hits_and_refusals_are_not_kept() -> None:
    key, token = _key()
    auth = Authenticator(Keys(key), TTL_S)  # type: ignore[arg-type]
    assert isinstance(_answer(auth, (("authorization", f"Bearer {token}"),)), Principal)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    for _ in range(3):
        assert _answer(auth, (("authorization", f"Bearer {wrong}"),)) == "CREDENTIALS_INVALID"
        assert _answer(auth, (("authorization", "Bearer nonsense"),)) == "CREDENTIALS_INVALID"
        assert _answer(auth, ()) == "CREDENTIALS_MISSING"
        assert _answer(auth, (("authorization", token.encode()),)) == "CREDENTIALS_MISSING"
    assert list(auth._verified) == [f"Bearer {token}"]


def test_of_two_authorization_headers_the_last_counts() -> None:
    key, token = _key()
    auth = Authenticator(Keys(key), TTL_S)  # type: ignore[arg-type]
    good, bad = ("authorization", f"Bearer {token}"), ("authorization", "Bearer x")
    assert isinstance(_answer(auth, (bad, good)), Principal)
    assert _answer(auth, (good, bad)) == "CREDENTIALS_INVALID"


def _reference(
    keys: Keys, cache: dict[str, tuple[float, ApiKey | None]], now_s: float, header: Any
) -> object:
    """The full check on every call (the code before the header cache), row cache alike."""
    if not isinstance(header, str) or not header:
        return "CREDENTIALS_MISSING"
    token = credentials.parse_token(header.removeprefix("Bearer ").strip())
    if token is None:
        return "CREDENTIALS_INVALID"
    cached = cache.get(token[0])
    if cached is None or now_s - cached[0] >= TTL_S:
        cached = cache[token[0]] = (now_s, keys.rows.get(token[0]))
    row = cached[1]
    if row is None or row.secret_hash != credentials.secret_hash(token[1]):
        return "CREDENTIALS_INVALID"
    if row.revoke_time is not None:
        return "CREDENTIALS_REVOKED"
    return row.id


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["good0", "good1", "spaced0", "wrong0", "none", "junk", "bytes"]),
            st.sampled_from([0.0, 0.5, 2.0, 5.0]),  # time passing before the call
            st.sampled_from([None, 0, 1]),  # a key revoked before the call
        ),
        max_size=30,
    )
)
def test_the_cache_answers_as_the_full_check(
    steps: list[tuple[str, float, int | None]],
) -> None:
    pairs = [_key(), _key()]
    keys, clock = Keys(*(k for k, _ in pairs)), Clock()
    auth = Authenticator(keys, TTL_S)  # type: ignore[arg-type]
    reference_keys = Keys(*(k for k, _ in pairs))
    reference_cache: dict[str, tuple[float, ApiKey | None]] = {}
    tokens = [t for _, t in pairs]
    headers: dict[str, Any] = {
        "good0": f"Bearer {tokens[0]}",
        "good1": f"Bearer {tokens[1]}",
        "spaced0": f"Bearer  {tokens[0]} ",
        "wrong0": f"Bearer {tokens[0][:-2]}zz",
        "none": None,
        "junk": "Bearer kassa_zz",
        "bytes": tokens[0].encode(),
    }
    with mock.patch.object(auth_module, "time", clock):
        for name, passing_s, revoke in steps:
            clock.now_s += passing_s
            if revoke is not None:
                key = pairs[revoke][0]
                for rows in (keys.rows, reference_keys.rows):
                    rows[key.id] = dataclasses.replace(key, revoke_time=datetime.now(UTC))
            header = headers[name]
            metadata = () if header is None else (("authorization", header),)
            got = _answer(auth, metadata)
            expected = _reference(reference_keys, reference_cache, clock.now_s, header)
            assert (got.key_id if isinstance(got, Principal) else got) == expected


@pytest.mark.parametrize("ttl_s", [0.0])
def test_no_ttl_no_cache(ttl_s: float) -> None:
    key, token = _key()
    keys = Keys(key)
    auth = Authenticator(keys, ttl_s)  # type: ignore[arg-type]
    for _ in range(3):
        assert isinstance(_answer(auth, (("authorization", f"Bearer {token}"),)), Principal)
    assert keys.gets == 3
