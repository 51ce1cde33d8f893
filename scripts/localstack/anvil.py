"""A local anvil node and a small JSON-RPC client for driving it."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localstack.paths import ANVIL
from localstack.ports import free_port, wait_for_port


class RpcError(RuntimeError):
    pass


class JsonRpc:
    """Blocking JSON-RPC over HTTP; enough for tests and the demo."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._ids = itertools.count(1)

    def __call__(self, method: str, *params: Any) -> Any:
        payload = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        ).encode()
        request = urllib.request.Request(  # noqa: S310 (the node's loopback URL)
            self.url, data=payload, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            body = json.loads(response.read())
        if "error" in body:
            raise RpcError(f"{method}: {body['error']}")
        return body["result"]

    def wait_receipt(self, tx_hash: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            receipt = self("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return dict(receipt)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {tx_hash}")
            time.sleep(0.02)


@dataclass
class Anvil:
    base_dir: Path
    chain_id: int = 31337
    port: int = 0
    block_time_s: float | None = None
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).resolve()
        if not self.port:
            self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rpc(self) -> JsonRpc:
        return JsonRpc(self.http_url)

    def start(self) -> Anvil:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(ANVIL),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            "10",
            "--silent",
            *self.extra_args,
        ]
        if self.block_time_s:
            args += ["--block-time", str(self.block_time_s)]
        log = open(self.base_dir / "anvil.log", "ab")  # noqa: SIM115 (owned by the process)
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def accounts(self) -> list[str]:
        return [str(a).lower() for a in self.rpc("eth_accounts")]

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", hex(blocks))

    def head(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
