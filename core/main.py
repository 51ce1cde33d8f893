"""kassa-core: the payment core process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from core.config import ConfigError, load
from core.store.migrate import MigrationError, migrate
from telemetry import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassa-core", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the core (default)")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    args = parser.parse_args(argv)
    logs.setup("kassa-core")
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
        from core.server import serve

        asyncio.run(serve(config))
        return 0
    except MigrationError as exc:
        logging.getLogger("kassa.core").error("migration refused", extra={"reason": str(exc)})
        return 1


if __name__ == "__main__":
    sys.exit(main())
