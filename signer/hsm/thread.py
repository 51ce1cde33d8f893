"""The one thread per process allowed to call the PKCS#11 module.

python-pkcs11 initialises the module without OS locking, so two threads inside
it at once crash SoftHSM; every HSM call is queued onto this thread instead.

Calls from the event loop are drained in groups: one job on the thread runs
every call waiting, then hands the group's results back to the loop in one
wake-up, so under load a signature costs no thread hop of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ParamSpec, TypeAlias, TypeVar

from signer.settle import Settled, deliver

P = ParamSpec("P")
T = TypeVar("T")

_Pending: TypeAlias = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class HsmThread:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsm")
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._draining = False

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return self._executor.submit(fn, *args, **kwargs).result()

    async def acall(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._pending.append((partial(fn, *args, **kwargs), loop, future))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        return await future

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _drain(self) -> None:
        """On the HSM thread: run what is waiting, in order, until nothing is."""
        while True:
            with self._lock:
                group, self._pending = self._pending, []
                if not group:
                    self._draining = False
                    return
            by_loop: dict[asyncio.AbstractEventLoop, list[Settled]] = {}
            for fn, loop, future in group:
                try:
                    outcome: Settled = (future, fn(), None)
                except BaseException as exc:  # as the executor would: the caller gets it
                    outcome = (future, None, exc)
                by_loop.setdefault(loop, []).append(outcome)
            deliver(by_loop)
