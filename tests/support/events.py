"""Following a core's event stream from a test."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc

from core.clients import ApiTls, authed_channel
from kassa.core.v1 import event_pb2, event_pb2_grpc


class EventTap:
    """Collects one merchant's events in a background thread, resuming across
    core restarts from the last sequence it saw."""

    def __init__(self, target: str, parent: str, token: str, tls: ApiTls) -> None:
        self.target = target
        self.tls = tls
        self.parent = parent
        self.token = token
        self.after = 0
        self.events: queue.Queue[event_pb2.Event] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with authed_channel(self.target, self.token, self.tls) as channel:
                    stub = event_pb2_grpc.EventServiceStub(channel)
                    stream = stub.StreamEvents(
                        event_pb2.StreamEventsRequest(
                            parent=self.parent, after_sequence=self.after
                        ),
                        wait_for_ready=True,
                    )
                    self._current = stream
                    for response in stream:
                        self.after = response.event.sequence
                        self.events.put(response.event)
            except grpc.RpcError:
                time.sleep(0.1)

    def wait_for(
        self, invoice: str, event_type: str, timeout_s: float = 20.0
    ) -> list[event_pb2.Event]:
        """Events of `invoice` up to and including the first of `event_type`."""
        seen: list[event_pb2.Event] = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {event_type} for {invoice}; saw {[e.type for e in seen]}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event.invoice.name != invoice:
                continue
            seen.append(event)
            if event.type == event_type:
                return seen

    def drain(self, wait_s: float = 0.5) -> Iterator[event_pb2.Event]:
        time.sleep(wait_s)
        while not self.events.empty():
            yield self.events.get_nowait()

    def close(self) -> None:
        self._stop.set()
        if hasattr(self, "_current"):
            self._current.cancel()
