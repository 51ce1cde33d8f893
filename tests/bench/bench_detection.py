"""scripts/bench detection: block mined → invoice.detected at a StreamEvents client.

The whole stack runs as separate processes (anvil, EVM adapter, core,
PostgreSQL). For each of N payments: the transfer waits in anvil's mempool
(automine off), the block is mined at t0, and the time until the
invoice.detected event reaches a StreamEvents consumer is recorded. The
baseline is the raw WebSocket newHeads latency from the same evm_mine to a
plain subscriber, measured in the same run; the figures that matter are the
extra milliseconds Kassa adds on top of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc
import websockets

from core.clients import authed_channel
from kassa.core.v1 import event_pb2, event_pb2_grpc, invoice_pb2, invoice_pb2_grpc
from localstack.fullstack import LocalStack


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class HeadWatcher:
    """A raw newHeads subscriber: the time each head arrives, by block number."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.arrivals: dict[int, float] = {}
        self._ready = threading.Event()
        threading.Thread(target=self._run_quietly, daemon=True).start()
        self._ready.wait(10)

    def _run_quietly(self) -> None:
        # The node going away at the end of the run ends the subscription; not an error.
        with contextlib.suppress(websockets.ConnectionClosed, OSError):
            asyncio.run(self._run())

    async def _run(self) -> None:
        async with websockets.connect(self.ws_url, max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
                )
            )
            await ws.recv()
            self._ready.set()
            async for message in ws:
                now = time.monotonic()
                head = json.loads(message).get("params", {}).get("result", {})
                if "number" in head:
                    self.arrivals[int(head["number"], 16)] = now


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=200)
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-detection-"))
    stack = LocalStack(run_dir, block_time_s=None, confirmations=1)
    try:
        stack.start_all(signer=False)
        core = stack.core_setup()
        token = core.merchant_token("bench")
        stack.anvil.rpc("evm_setAutomine", False)
        heads = HeadWatcher(stack.anvil.ws_url)
        detected: dict[str, float] = {}
        seen = threading.Condition()

        def consume() -> None:
            with (
                contextlib.suppress(grpc.RpcError),
                authed_channel(core.target, token, core.api_tls()) as channel,
            ):
                stream = event_pb2_grpc.EventServiceStub(channel).StreamEvents(
                    event_pb2.StreamEventsRequest(
                        parent="merchants/bench", types=["invoice.detected"]
                    )
                )
                for response in stream:
                    with seen:
                        detected[response.event.invoice.name] = time.monotonic()
                        seen.notify_all()

        threading.Thread(target=consume, daemon=True).start()
        extra_ms: list[float] = []
        total_ms: list[float] = []
        head_ms: list[float] = []
        with core.channel(token) as channel:
            invoices = invoice_pb2_grpc.InvoiceServiceStub(channel)
            for i in range(args.payments):
                invoice = invoices.CreateInvoice(
                    invoice_pb2.CreateInvoiceRequest(
                        parent="merchants/bench",
                        merchant_order_id=f"b{i}",
                        asset=stack.token_asset,
                        asset_amount="1000000",
                    )
                ).invoice
                stack.token.transfer(stack.customer, invoice.deposit_address, 1_000_000)
                height = stack.anvil.head() + 1
                t0 = time.monotonic()
                stack.anvil.rpc("evm_mine")
                with seen:
                    if not seen.wait_for(lambda name=invoice.name: name in detected, timeout=30):
                        raise TimeoutError(f"no invoice.detected for {invoice.name}")
                deadline = time.monotonic() + 5
                while height not in heads.arrivals and time.monotonic() < deadline:
                    time.sleep(0.001)
                head = (heads.arrivals[height] - t0) * 1000
                total = (detected[invoice.name] - t0) * 1000
                head_ms.append(head)
                total_ms.append(total)
                extra_ms.append(total - head)
        p50, p99 = percentile(extra_ms, 0.5), percentile(extra_ms, 0.99)
        result = {
            "bench": "detection",
            "value": round(percentile(total_ms, 0.5), 2),
            "unit": "ms (p50, block mined to invoice.detected at a StreamEvents client)",
            "baseline": round(percentile(head_ms, 0.5), 2),
            "ratio": round(percentile(total_ms, 0.5) / max(percentile(head_ms, 0.5), 1e-6), 2),
            "p50_extra_ms": round(p50, 2),
            "p99_extra_ms": round(p99, 2),
            "p50_ms": round(percentile(total_ms, 0.5), 2),
            "p99_ms": round(percentile(total_ms, 0.99), 2),
            "baseline_p50_ms": round(percentile(head_ms, 0.5), 2),
            "baseline_p99_ms": round(percentile(head_ms, 0.99), 2),
            "payments": len(total_ms),
            "mean_extra_ms": round(statistics.fmean(extra_ms), 2),
        }
        print(json.dumps(result))
        return 0
    finally:
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
