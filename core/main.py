"""kassa-core: the payment core process.

Exit codes: 0 after SIGTERM/SIGINT (or a command done), 2 for a configuration
it cannot use, 1 when it cannot start (database unreachable, schema not
current, signer link down, an address taken: the one log line says which).
"""

from __future__ import annotations

import os

# gRPC's C core writes its own plain-text lines on stderr (a failed TLS handshake is
# an INFO line); the core's stderr is one JSON object per line, so only its errors,
# unless the operator asks for more. Read once, when grpc is first imported: here.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import logging
import sys
from pathlib import Path
from urllib.parse import urlsplit

from core import event_loop
from core.config import Config, load_for_process
from core.signer_link.probe import SignerLinkError
from core.startup import ListenError
from core.store.db import create_pool
from core.store.migrate import MigrationError, migrate, refusal_to_serve, schema_status
from core.webhooks.reseal import Resealed, reseal
from core.webhooks.sealing import SealError

log = logging.getLogger("kassa.core")


def database_of(dsn: str) -> str:
    """host:port/database of a DSN, without user or password, for log lines."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or ''}:{parts.port or 5432}{parts.path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kassa-core", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="run the core (default)")
    serve_cmd.add_argument(
        "--migrate",
        action="store_true",
        help="apply pending migrations before serving (default: refuse to serve with any)",
    )
    migrate_cmd = sub.add_parser("migrate", help="apply pending database migrations and exit")
    migrate_cmd.add_argument(
        "--status", action="store_true", help="print applied and pending migrations; change nothing"
    )
    sub.add_parser(
        "reseal-secrets",
        help="seal every webhook secret under the current KEK (after a KEK rotation) and exit",
    )
    args = parser.parse_args(argv)
    config = load_for_process(args.config, log)
    if config is None:
        return 2
    try:
        if args.command == "migrate":
            return event_loop.run(_migrate(config.dsn, args.status))
        if args.command == "reseal-secrets":
            done = event_loop.run(_reseal(config))
            print(
                f"sealed {done.plaintext} plaintext, re-sealed {done.rewrapped} under KEK "
                f"{config.webhook_keys.current_id if config.webhook_keys else ''}"
            )
            return 0
        from core.server import serve

        # On uvloop (core/event_loop.py): every RPC's share of the loop's own work shrinks.
        event_loop.run(serve(config, apply_migrations=bool(getattr(args, "migrate", False))))
        return 0
    except MigrationError as exc:
        log.error("schema refused", extra={"reason": str(exc)})
        return 1
    except ListenError as exc:
        log.error(
            "cannot listen",
            extra={"what": exc.what, "listen": exc.listen, "error": exc.error},
        )
        return 1
    except SignerLinkError as exc:
        log.error(
            "signer link down",
            extra={
                "signer": exc.target,
                "server_name": exc.server_name or None,
                "cause": str(exc.down.cause),
                "explanation": exc.down.explanation,
                "error": exc.down.detail,
                "waited_s": exc.waited_s,
            },
        )
        return 1
    except SealError as exc:
        # A KEK was dropped before its secrets were re-sealed: refuse rather than fail deliveries.
        log.error("webhook secrets refused", extra={"reason": str(exc)})
        return 1
    except OSError as exc:
        # Connection refused, unreachable host, DNS: one line, no traceback; a
        # supervisor (systemd Restart=on-failure) retries.
        log.error(
            "database unreachable",
            extra={"database": database_of(config.dsn), "error": str(exc) or type(exc).__name__},
        )
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
            log.error(
                "database refused",
                extra={
                    "database": database_of(config.dsn),
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            return 1
        raise


async def _reseal(config: Config) -> Resealed:
    assert config.webhook_keys is not None
    await migrate(config.dsn)
    pool = await create_pool(config.dsn, max_size=1, min_size=1)
    try:
        return await reseal(pool, config.webhook_keys)
    finally:
        await pool.close()


async def _migrate(dsn: str, status_only: bool) -> int:
    if status_only:
        status = await schema_status(dsn)
        for m in status.known:
            print(f"{m.name}\t{'applied' if m.version in status.applied else 'pending'}")
        for version in status.newer:
            print(f"{version:04d}\tunknown to this binary (newer)")
        refusal = refusal_to_serve(status)
        print("ready to serve" if refusal is None else f"not ready: {refusal}")
        return 0 if refusal is None else 1
    applied = await migrate(dsn)
    print("\n".join(applied) if applied else "no pending migrations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
