"""Seals every webhook secret under the current KEK: plaintext rows left by
migration 0009, and rows sealed under an older KEK after a rotation.

Runs at the core's start before it serves (and as `kassa-core reseal-secrets`);
each row is rewritten in its own statement under FOR UPDATE, so a concurrent
rotation of the same endpoint is never lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from core.webhooks.sealing import Keyring, SealError, kek_of, seal, unseal

log = logging.getLogger("kassa.core.webhooks")


@dataclass(frozen=True)
class Resealed:
    plaintext: int  # rows whose plaintext secret was sealed and cleared
    rewrapped: int  # rows moved from an older KEK to the current one


def _open(
    keyring: Keyring, endpoint_id: str, plain: str | None, sealed: bytes | None
) -> str | None:
    if sealed is not None:
        return unseal(keyring, endpoint_id, bytes(sealed))
    return plain


async def reseal(pool: asyncpg.Pool, keyring: Keyring) -> Resealed:
    """Raises SealError (naming the endpoint and KEK) when a secret cannot be opened:
    a KEK was dropped from the keyring before its secrets were re-sealed."""
    plaintext = rewrapped = 0
    current = keyring.current_id
    async with pool.acquire() as conn:
        ids = await conn.fetch(
            """SELECT id, secret_sealed, previous_secret_sealed FROM webhook_endpoints
                WHERE secret IS NOT NULL OR previous_secret IS NOT NULL
                   OR secret_sealed IS NOT NULL OR previous_secret_sealed IS NOT NULL"""
        )
        todo = [
            r["id"]
            for r in ids
            if r["secret_sealed"] is None
            or kek_of(bytes(r["secret_sealed"])) != current
            or (
                r["previous_secret_sealed"] is not None
                and kek_of(bytes(r["previous_secret_sealed"])) != current
            )
        ]
        for endpoint_id in todo:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT * FROM webhook_endpoints WHERE id = $1 FOR UPDATE", endpoint_id
                )
                assert row is not None
                secret = _open(keyring, endpoint_id, row["secret"], row["secret_sealed"])
                previous = _open(
                    keyring, endpoint_id, row["previous_secret"], row["previous_secret_sealed"]
                )
                assert secret is not None, "the table's CHECK keeps one form of the secret"
                await conn.execute(
                    """UPDATE webhook_endpoints
                          SET secret = NULL, previous_secret = NULL,
                              secret_sealed = $2, previous_secret_sealed = $3
                        WHERE id = $1""",
                    endpoint_id,
                    seal(keyring, endpoint_id, secret),
                    None if previous is None else seal(keyring, endpoint_id, previous),
                )
                if row["secret"] is not None or row["previous_secret"] is not None:
                    plaintext += 1
                else:
                    rewrapped += 1
    if plaintext or rewrapped:
        log.info(
            "webhook secrets sealed under the current KEK",
            extra={"kek": current, "plaintext": plaintext, "rewrapped": rewrapped},
        )
    return Resealed(plaintext, rewrapped)


__all__ = ["Resealed", "SealError", "reseal"]
