"""The EVM adapter's metrics: is a node reachable, how high is its head, how often it reconnected."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NODE_UP = Gauge("kassa_evm_node_up", "1 while connected to a node, else 0.")
HEAD_HEIGHT = Gauge("kassa_evm_head_height", "Height of the node's head as last seen.")
CONNECTS = Counter(
    "kassa_evm_node_connects", "WebSocket connections opened to a node (the first and reconnects)."
)
CONNECT_FAILURES = Counter(
    "kassa_evm_node_connect_failures", "Attempts to connect to a node that failed."
)
DISCONNECTS = Counter("kassa_evm_node_disconnects", "Connections to a node that were lost.")
