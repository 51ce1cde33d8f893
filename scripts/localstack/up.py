"""scripts/stack up: the local stack with N core replicas (and a JetStream cluster), until Ctrl-C.

  scripts/stack up [--replicas N] [--jetstream] [--chains 31337,31338] [--run-dir DIR]

Starts PostgreSQL, SoftHSM2, anvil per chain, the signer, one EVM adapter
per chain, N core replicas on one database (replica 0 is the stack's core;
each replica leads what it wins, core/leadership) and, with --jetstream, a
3-node JetStream cluster on loopback to which the elected replica relays the
outbox (core/relay). Prints how to reach every replica and the stream, then
waits; Ctrl-C or SIGTERM stops everything. All it writes is under the run
directory (.run/stack).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from localstack.demo import clean_previous_run
from localstack.fullstack import LocalStack
from localstack.jetstream import NatsCluster
from localstack.paths import REPO
from localstack.replicas import Replicas, leadership_options

LEASE_S = 5.0


def say(text: str) -> None:
    print(f"[stack] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--replicas", type=int, default=1, choices=range(1, 6))
    parser.add_argument("--jetstream", action="store_true", help="a 3-node JetStream cluster")
    parser.add_argument("--chains", default="31337", help="EVM chain ids, comma-separated")
    parser.add_argument("--run-dir", type=Path, default=REPO / ".run" / "stack")
    args = parser.parse_args(argv)
    clean_previous_run(args.run_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cluster: NatsCluster | None = None
    options: dict[str, object] = dict(leadership_options(LEASE_S))
    if args.jetstream:
        cluster = NatsCluster(args.run_dir / "nats").start()
        options["jetstream"] = {"servers": cluster.urls, "replicas": 3}
        say(f"JetStream cluster: {', '.join(cluster.urls)} (stream KASSA_EVENTS, kassa.events.>)")
    stack = LocalStack(
        args.run_dir,
        chain_ids=tuple(int(c) for c in args.chains.split(",")),
        core_options=options,
    )
    replicas: Replicas | None = None
    try:
        stack.start_all()
        replicas = Replicas(stack, args.replicas)
        replicas.start_others()
        ca = stack.core_setup().ca_file
        for i, setup in enumerate(replicas.setups):
            say(f"core replica-{i}: {setup.target} (log {setup.run_dir / 'core.log'})")
        key_file = args.run_dir / "platform-key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:  # a secret: into a private file, never the console
            f.write(stack.core_setup().admin_token() + "\n")
        say(f"API TLS CA: {ca}; a platform API key is in {key_file} (mode 0600)")
        say(f"kassactl --target {replicas.setups[0].target} --ca-file {ca} ...")
        say("who leads what: the leader_epochs table (database in core.toml)")
        say("Ctrl-C stops everything")
        stop.wait()
    finally:
        codes = replicas.stop_others() if replicas is not None else {}
        codes.update(stack.stop())
        if cluster is not None:
            codes.update(cluster.stop())
        say("stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
