"""Nonces per (chain, signing key), kept in PostgreSQL.

A nonce is allocated in the same transaction that moves a payout to signing
(the row lock on payout_nonces serialises concurrent payouts, across
processes and restarts). A nonce whose transaction the signer refused was
never signed nor broadcast: it goes back to payout_free_nonces and is reused
first, so the chain never waits on a gap. `reconcile` aligns the table with
the chain at start, after a reorg removed a landed payout, and when a payout
waits behind a nonce the chain lacks. A gap that no payout will fill is taken
by a nonce fill (`take_gap`, decided by core/payouts/gaps.py).
"""

from __future__ import annotations

import asyncpg

from core.payouts.machine import State


async def _lock(conn: asyncpg.Connection, chain: str, key_id: str) -> int:
    next_nonce = await conn.fetchval(
        "SELECT next_nonce FROM payout_nonces WHERE chain = $1 AND key_id = $2 FOR UPDATE",
        chain,
        key_id,
    )
    if next_nonce is None:
        raise LookupError(f"no nonce row for {key_id} on {chain}: reconcile first")
    return int(next_nonce)


async def allocate(conn: asyncpg.Connection, chain: str, key_id: str) -> int:
    """The lowest free nonce, else the next one; in the caller's transaction."""
    next_nonce = await _lock(conn, chain, key_id)
    free = await conn.fetchval(
        """DELETE FROM payout_free_nonces WHERE (chain, key_id, nonce) =
             (SELECT chain, key_id, nonce FROM payout_free_nonces
               WHERE chain = $1 AND key_id = $2 ORDER BY nonce LIMIT 1)
           RETURNING nonce""",
        chain,
        key_id,
    )
    if free is not None:
        return int(free)
    await conn.execute(
        "UPDATE payout_nonces SET next_nonce = $3 WHERE chain = $1 AND key_id = $2",
        chain,
        key_id,
        next_nonce + 1,
    )
    return next_nonce


async def peek(conn: asyncpg.Connection, chain: str, key_id: str) -> int:
    """The nonce `allocate` would return now (for a body waiting for approvals)."""
    next_nonce = await _lock(conn, chain, key_id)
    free = await conn.fetchval(
        "SELECT min(nonce) FROM payout_free_nonces WHERE chain = $1 AND key_id = $2",
        chain,
        key_id,
    )
    return int(free) if free is not None else next_nonce


async def release(conn: asyncpg.Connection, chain: str, key_id: str, nonce: int) -> None:
    """Gives back a nonce that no signed transaction uses."""
    await _lock(conn, chain, key_id)
    await conn.execute(
        "INSERT INTO payout_free_nonces (chain, key_id, nonce) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        chain,
        key_id,
        nonce,
    )


async def claim(conn: asyncpg.Connection, chain: str, key_id: str, nonce: int) -> bool:
    """Takes exactly `nonce` if it is still free (an approved body names it)."""
    next_nonce = await _lock(conn, chain, key_id)
    if nonce == next_nonce:
        await conn.execute(
            "UPDATE payout_nonces SET next_nonce = $3 WHERE chain = $1 AND key_id = $2",
            chain,
            key_id,
            next_nonce + 1,
        )
        return True
    taken = await conn.fetchval(
        "DELETE FROM payout_free_nonces WHERE chain = $1 AND key_id = $2 AND nonce = $3 RETURNING nonce",
        chain,
        key_id,
        nonce,
    )
    return taken is not None


async def take_gap(conn: asyncpg.Connection, chain: str, key_id: str, nonce: int) -> bool:
    """Takes `nonce`, below the key's next nonce, for a nonce fill: off the free list if it
    is there. False when it was never allocated (nothing can wait behind it). The caller,
    holding the row lock from here to its commit, checks that no live payout holds it."""
    next_nonce = await _lock(conn, chain, key_id)
    if nonce >= next_nonce:
        return False
    await conn.execute(
        "DELETE FROM payout_free_nonces WHERE chain = $1 AND key_id = $2 AND nonce = $3",
        chain,
        key_id,
        nonce,
    )
    return True


async def reconcile(
    conn: asyncpg.Connection,
    chain: str,
    key_id: str,
    address: str,
    chain_latest: int,
    chain_pending: int,
) -> int:
    """Aligns the stored nonces with the chain; returns the next nonce.

    - next below the chain's pending nonce: the key sent transactions Kassa
      does not know (or the database was restored) — skip past them;
    - free nonces below the chain's latest nonce were consumed elsewhere;
    - a nonce in [latest, next) that no stored transaction and no signing
      payout uses would block every later one: it becomes free.
    """
    await conn.execute(
        """INSERT INTO payout_nonces (chain, key_id, address, next_nonce) VALUES ($1, $2, $3, $4)
           ON CONFLICT (chain, key_id) DO NOTHING""",
        chain,
        key_id,
        address,
        chain_pending,
    )
    next_nonce = max(await _lock(conn, chain, key_id), chain_pending)
    await conn.execute(
        "UPDATE payout_nonces SET next_nonce = $3, address = $4 WHERE chain = $1 AND key_id = $2",
        chain,
        key_id,
        next_nonce,
        address,
    )
    await conn.execute(
        "DELETE FROM payout_free_nonces WHERE chain = $1 AND key_id = $2 AND nonce < $3",
        chain,
        key_id,
        chain_latest,
    )
    used = {
        int(r["nonce"])
        for r in await conn.fetch(
            """SELECT t.nonce FROM payout_transactions t JOIN payouts p ON p.id = t.payout_id
                WHERE p.chain = $1 AND p.key_id = $2 AND t.nonce >= $3
               UNION
               SELECT nonce FROM payouts
                WHERE chain = $1 AND key_id = $2 AND nonce >= $3 AND state = $4
               UNION
               SELECT nonce FROM payout_free_nonces WHERE chain = $1 AND key_id = $2""",
            chain,
            key_id,
            chain_latest,
            State.SIGNING,
        )
    }
    gaps = [n for n in range(chain_latest, next_nonce) if n not in used]
    if gaps:
        await conn.executemany(
            "INSERT INTO payout_free_nonces (chain, key_id, nonce) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(chain, key_id, n) for n in gaps],
        )
    return next_nonce
