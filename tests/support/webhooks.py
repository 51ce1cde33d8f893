"""A webhook receiver that accepts everything, and the docs' verification recipe.

The recipe is executed from docs/webhooks.md itself, so the tests verify what
a merchant would copy."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from localstack.paths import REPO
from localstack.ports import free_port

DOC = REPO / "docs" / "webhooks.md"


def docs_recipe() -> Callable[[bytes, str, str], bool]:
    """verify_kassa_webhook(body, signature_header, secret) as docs/webhooks.md gives it."""
    match = re.search(r"## Verifying \(copy this\)\n\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/webhooks.md lost its recipe"
    namespace: dict[str, object] = {}
    exec(match.group(1), namespace)  # noqa: S102 (our own documentation)
    return namespace["verify_kassa_webhook"]  # type: ignore[return-value]


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class AcceptingReceiver:
    """A real HTTP server on 127.0.0.1 that answers 200 and keeps what it received."""

    port: int = field(default_factory=free_port)
    received: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> AcceptingReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.received.append(Delivery(dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wait_for(self, count: int, timeout_s: float = 20.0) -> Delivery:
        """The count-th delivery (1-based), once it has arrived."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if len(self.received) >= count:
                    return self.received[count - 1]
            assert time.monotonic() < deadline, f"delivery {count} did not arrive"
            time.sleep(0.02)
