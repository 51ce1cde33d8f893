"""Whether the signer can do its work, published as grpc.health.v1 ("" and SignerService).

A signer that cannot reach its keys or cannot append to its audit store can
only refuse: it says NOT_SERVING so that the core and the operator's probes
see it before a payout does. Two probes, every `interval_s`:

- the token: every key the signer started with (the hot keys, and the KEK
  under which the HD seed is sealed) is still found on it. A token that was
  removed, reset or whose session died answers with an error or without the
  keys (SoftHSM2 with its token directory gone finds nothing).
- the audit store: the state file is still the one opened at start (not
  deleted or replaced underneath), its directory is writable for this
  process, and a write transaction can be begun and committed (the batch
  thread's BEGIN IMMEDIATE: a file locked by another process, read-only or
  gone fails here, as every Sign's audit append would).

The decider (`decide`) is pure; the watcher logs one line per change.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from signer.hsm.thread import HsmThread
from signer.hsm.token import TokenSession
from signer.state import store
from signer.state.store import StoreThread

log = logging.getLogger("signer.health")
INTERVAL_S = 1.0
# Past the store's busy timeout: a locked file fails the probe by itself, not by our clock.
PROBE_TIMEOUT_S = store.BUSY_TIMEOUT_MS / 1000 + 5


@dataclass(frozen=True)
class Verdict:
    token_problem: str | None
    store_problem: str | None

    @property
    def serving(self) -> bool:
        return self.token_problem is None and self.store_problem is None


def decide(token_problem: str | None, store_problem: str | None) -> Verdict:
    verdict = Verdict(token_problem, store_problem)
    assert verdict.serving == (token_problem is None and store_problem is None)
    return verdict


def token_probe(
    thread: HsmThread, session: TokenSession, hot_keys: set[str], hd: bool
) -> Callable[[], Awaitable[str | None]]:
    def look() -> str | None:
        missing = sorted(label for label in hot_keys if session.hot_key(label) is None)
        if missing:
            return f"hot key {missing[0]!r} is no longer on the token"
        if hd and session.kek() is None:
            return "the KEK sealing the HD seed is no longer on the token"
        return None

    async def probe() -> str | None:
        try:
            return await asyncio.wait_for(thread.acall(look), PROBE_TIMEOUT_S)
        except TimeoutError:
            return f"the token did not answer within {PROBE_TIMEOUT_S:g} s"
        except Exception as exc:  # any PKCS#11 error: the token is not usable
            return f"the token failed: {type(exc).__name__}"

    return probe


def store_probe(db: StoreThread, path: Path) -> Callable[[], Awaitable[str | None]]:
    opened = os.stat(path)

    async def probe() -> str | None:
        try:
            now = os.stat(path)
        except OSError:
            return "the state file is gone"
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            return "the state file was replaced"
        if not os.access(path.parent, os.W_OK) or not os.access(path, os.W_OK):
            return "the state directory is not writable"
        try:
            # An empty batch: BEGIN IMMEDIATE, then COMMIT, on the store's own thread.
            await asyncio.wait_for(db.acall(store.head), PROBE_TIMEOUT_S)
        except TimeoutError:
            return f"the state file did not answer within {PROBE_TIMEOUT_S:g} s"
        except Exception as exc:
            return f"the state file cannot be written: {type(exc).__name__}"
        return None

    return probe


async def watch(
    token: Callable[[], Awaitable[str | None]],
    audit_store: Callable[[], Awaitable[str | None]],
    publish: Callable[[bool], Awaitable[None]],
    interval_s: float = INTERVAL_S,
) -> None:
    """Observes forever; publishes the first verdict and every change, logging each once."""
    last: Verdict | None = None
    while True:
        verdict = decide(await token(), await audit_store())
        if verdict != last:
            await publish(verdict.serving)
            if verdict.serving:
                log.info("token and audit store usable: SERVING")
            else:
                log.error(
                    "cannot sign: NOT_SERVING",
                    extra={"token": verdict.token_problem, "audit_store": verdict.store_problem},
                )
            last = verdict
        await asyncio.sleep(interval_s)
