"""kassa-core's webhook delivery process (core/webhooks/process.py).

Started by the core with the core's own configuration file and environment
(`python -m core.delivery_main --config core.toml --index 0`): it loads that
file as the core does, so its secrets (the database password, the webhook
KEK) come from the same files or environment variables, never from its
command line, and are never logged. Imports nothing of the gRPC server.

Exit codes: 0 after SIGTERM/SIGINT or when the core is gone (its stdin
closed), 2 for a configuration it cannot use, 1 when its worker failed (the
core logs it and starts it again).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from core import event_loop
from core.config import load_for_process
from core.telemetry import logs
from core.webhooks import fleet, process

log = logging.getLogger("kassa.core.webhooks")


def utc_now() -> datetime:
    return datetime.now(UTC)


# Net new container objects between two young collections (the default is 700).
GC_YOUNG_THRESHOLD = 10_000


def _lean_gc() -> None:
    """The cyclic GC of a delivery process, measured in the events bench (gc.callbacks,
    9,000 deliveries): ~180 ms of the process's 3.5 s of CPU, ~20 us a delivery.
    - Full collections walked the ~83,000 objects of the imports and configuration
      every time (112 ms of it); frozen, they are never walked again (4-5 ms).
    - Young collections ran ~430 times (~60 ms): 32 requests in flight hold a few
      hundred objects each, and their count swings across 700 at every burst. At
      10,000 one ran in the whole bench. Cycles are still collected, later."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassa-core-deliveries", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="the core's TOML file")
    parser.add_argument("--index", type=int, required=True, help="which of the processes")
    args = parser.parse_args(argv)
    config = load_for_process(args.config, log)
    if config is None:
        return 2
    # The core's log schema, plus which delivery process wrote the line.
    logs.mark({"delivery_process": args.index})
    settings = config.webhooks
    if not 0 <= args.index < settings.delivery_processes:
        log.error(
            "no such delivery process",
            extra={"index": args.index, "delivery_processes": settings.delivery_processes},
        )
        return 2
    assert config.webhook_keys is not None, "config.parse requires [secrets]"
    _lean_gc()
    # uvloop (core/event_loop.py), measured here: the loop's own scheduling was
    # ~18 % of a delivery's CPU on asyncio's loop. aiohttp POSTs to the events
    # bench's receiver, 16 at once, alternating loops, six rounds each: 158 ->
    # 144 us CPU per POST (median; min 150 -> 140); the events bench, this
    # process's CPU per delivery, best rounds of paired runs: 537 -> 450 us.
    try:
        event_loop.run(
            process.run(
                config.dsn,
                fleet.settings_of(settings, args.index),
                config.webhook_keys,
                utc_now,
                config.health.interval_s,
            )
        )
    except Exception:
        log.exception("webhook delivery process failed", extra={"index": args.index})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
