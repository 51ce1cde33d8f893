"""The signing secrets of claimed rows (core/webhooks/worker.claimed_of): a
sealed secret is opened once per process, not at every claim, and the row a
claim brings still decides which secrets sign (a rotation, a re-seal, the end
of an overlap take effect at the next claim)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.webhooks import sealing, worker
from core.webhooks.sealing import SealError, parse_keyring, seal

KEYRING = parse_keyring("k1:" + "AQ" * 21 + "A=")
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


_AESGCM = sealing.AESGCM


class _Counting:
    """sealing's AESGCM, counting decryptions (the Rust type takes no subclass)."""

    opened = 0

    def __init__(self, key: bytes) -> None:
        self._aead = _AESGCM(key)

    def encrypt(self, *args: Any) -> bytes:
        return bytes(self._aead.encrypt(*args))

    def decrypt(self, *args: Any) -> bytes:
        _Counting.opened += 1
        return bytes(self._aead.decrypt(*args))


@pytest.fixture
def decrypts(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Counting]]:
    """Counts the decryptions, from a process that has opened nothing yet."""
    worker._unseal.cache_clear()
    _Counting.opened = 0
    monkeypatch.setattr(sealing, "AESGCM", _Counting)
    yield _Counting
    worker._unseal.cache_clear()  # nothing opened under the counter is kept


def _row(endpoint_id: str, sealed: bytes, previous: bytes | None = None) -> dict[str, Any]:
    event_id = uuid.uuid4()
    return {
        "delivery_id": uuid.uuid4(),
        "attempt_count": 1,
        "give_up_time": NOW + timedelta(days=1),
        "event_id": event_id,
        "event_type": "invoice.created",
        "endpoint_id": endpoint_id,
        "url": "https://example.com/hook",
        "secret": "sealed",
        "secret_sealed": sealed,
        "previous_secret": None,
        "previous_secret_sealed": previous,
        "previous_secret_expire_time": None if previous is None else NOW + timedelta(hours=1),
        "sequence": 1,
        "id": event_id,
        "type": "invoice.created",
        "resource_type": "invoice",
        "payload": b"",
        "create_time": NOW,
    }


def test_a_sealed_secret_is_opened_once_across_claims(decrypts: type[_Counting]) -> None:
    a, b = seal(KEYRING, "a", "whsec_a"), seal(KEYRING, "b", "whsec_b")
    for _ in range(5):  # five claims, each with both endpoints' rows
        claimed = worker.claimed_of([_row("a", a), _row("b", b), _row("a", a)], NOW, KEYRING)
        assert [c.signing_secrets for c in claimed] == [["whsec_a"], ["whsec_b"], ["whsec_a"]]
    assert decrypts.opened == 2


def test_the_claimed_row_still_decides_which_secrets_sign(decrypts: type[_Counting]) -> None:
    first = seal(KEYRING, "a", "whsec_first")
    [claimed] = worker.claimed_of([_row("a", first)], NOW, KEYRING)
    assert claimed.signing_secrets == ["whsec_first"]
    # Rotated: the new secret signs, the old one too while the overlap lasts.
    rotated = _row("a", seal(KEYRING, "a", "whsec_second"), previous=first)
    [claimed] = worker.claimed_of([rotated], NOW, KEYRING)
    assert claimed.signing_secrets == ["whsec_second", "whsec_first"]
    [claimed] = worker.claimed_of([rotated], NOW + timedelta(hours=2), KEYRING)
    assert claimed.signing_secrets == ["whsec_second"]
    # Re-sealed (the same secret, new bytes): opened again, the same secret.
    [claimed] = worker.claimed_of([_row("a", seal(KEYRING, "a", "whsec_second"))], NOW, KEYRING)
    assert claimed.signing_secrets == ["whsec_second"]
    assert decrypts.opened == 3


def test_a_secret_that_does_not_open_is_refused_at_every_claim(
    decrypts: type[_Counting],
) -> None:
    # Sealed for another endpoint: never opens as this one's, nor is it remembered.
    wrong = seal(KEYRING, "b", "whsec_b")
    for _ in range(2):
        with pytest.raises(SealError):
            worker.claimed_of([_row("a", wrong)], NOW, KEYRING)
    assert decrypts.opened == 2
