"""The ledger poster against real PostgreSQL: a request that makes the
database fail a merged group fails alone; the others in its group post."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from core.ledger import queries
from core.ledger.batcher import Poster
from core.ledger.rules import Account, Transfer
from core.store.migrate import migrate

ASSET = "eip155:1/slip44:60"


def _transfer(id_: str, **kw: object) -> Transfer:
    fields: dict[str, object] = {
        "id": id_,
        "debit_account_id": "from",
        "credit_account_id": "to",
        "amount": 1,
        "asset": ASSET,
        "code": 1,
    }
    fields.update(kw)
    return Transfer(**fields)  # type: ignore[arg-type]


def test_only_the_offender_of_a_failed_group_fails(fresh_dsn: str) -> None:
    async def scenario() -> None:
        await migrate(fresh_dsn)
        pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=4)
        try:
            await queries.create_accounts(
                pool, [Account("from", ASSET, 1, 0), Account("to", ASSET, 1, 0)]
            )
            poster = Poster(pool, lambda: datetime.now(UTC))
            # Past the edge's bounds, as a bug or a new caller below it would send:
            # PostgreSQL refuses a NUL in text and fails the whole transaction.
            requests = [[_transfer(f"ok-{i}")] for i in range(10)]
            requests.insert(4, [_transfer("bad", reference="nul\x00")])
            # All queued before the poster runs: they share one group.
            waiters = [asyncio.ensure_future(poster.submit(r)) for r in requests]
            await asyncio.sleep(0)
            poster.start()
            outcomes = await asyncio.gather(*waiters, return_exceptions=True)
            await poster.stop()
            assert poster.groups == 1  # one merged group, then each request alone
            assert isinstance(outcomes[4], Exception)
            good = [o for i, o in enumerate(outcomes) if i != 4]
            assert all(not isinstance(o, BaseException) and o[0].ok for o in good), good
            async with pool.acquire() as conn:
                posted = await conn.fetchval(
                    "SELECT credits_posted FROM ledger_accounts WHERE id = 'to'"
                )
            assert int(posted) == 10
        finally:
            await pool.close()

    asyncio.run(scenario())
