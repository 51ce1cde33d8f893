"""kassa-core: the payment core process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from core import logs
from core.config import Config, ConfigError, load
from core.store.db import create_pool
from core.store.migrate import MigrationError, migrate
from core.webhooks.reseal import Resealed, reseal
from core.webhooks.sealing import SealError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassa-core", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the core (default)")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    sub.add_parser(
        "reseal-secrets",
        help="seal every webhook secret under the current KEK (after a KEK rotation) and exit",
    )
    args = parser.parse_args(argv)
    logs.setup()
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"kassa-core: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            applied = asyncio.run(migrate(config.dsn))
            print("\n".join(applied) if applied else "no pending migrations")
            return 0
        if args.command == "reseal-secrets":
            done = asyncio.run(_reseal(config))
            print(
                f"sealed {done.plaintext} plaintext, re-sealed {done.rewrapped} under KEK "
                f"{config.webhook_keys.current_id if config.webhook_keys else ''}"
            )
            return 0
        from core.server import serve

        asyncio.run(serve(config))
        return 0
    except MigrationError as exc:
        logging.getLogger("kassa.core").error("migration refused", extra={"reason": str(exc)})
        return 1
    except SealError as exc:
        # A KEK was dropped before its secrets were re-sealed: refuse rather than fail deliveries.
        print(f"kassa-core: webhook secrets: {exc}", file=sys.stderr)
        return 1


async def _reseal(config: Config) -> Resealed:
    assert config.webhook_keys is not None
    await migrate(config.dsn)
    pool = await create_pool(config.dsn, max_size=1, min_size=1)
    try:
        return await reseal(pool, config.webhook_keys)
    finally:
        await pool.close()


if __name__ == "__main__":
    sys.exit(main())
