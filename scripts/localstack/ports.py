"""Free loopback ports for servers the tests and the demo start."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int,
    timeout_s: float = 30.0,
    host: str = "127.0.0.1",
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Waits until something listens on the port; gives up early once `alive()` is False."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive():
            raise TimeoutError(f"the process meant to listen on {host}:{port} exited")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)
