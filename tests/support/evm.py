"""kassa-evm as a real subprocess, and a reader of its block stream that checks
the stream's contract on every event. Shared by the adapter's integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from kassa.chain.v1 import adapter_pb2 as pb
from kassa.chain.v1 import adapter_pb2_grpc as pb_grpc
from localstack import devcerts
from localstack.ports import free_port
from localstack.procs import ManagedProcess, console_script

EVENT_TIMEOUT_S = 20.0
# For a run of blocks: generous under a loaded machine, yet a stuck stream fails.
BLOCKS_TIMEOUT_S = 60.0


@functools.cache
def certs() -> Path:
    """Development certificates of the adapters these tests start (one CA per session)."""
    out = Path(tempfile.mkdtemp(prefix="kassa-evm-certs-"))
    devcerts.make(out, adapters=["eip155:31337", "eip155:1"])
    return out


def tls_lines(chain: str = "eip155:31337") -> str:
    """[server] mutual TLS: the chain's adapter certificate, the core as the only caller."""
    name = f"adapter-{chain.replace(':', '-')}"
    return (
        f'cert_file = "{certs() / (name + ".pem")}"\nkey_file = "{certs() / (name + ".key")}"\n'
        f'client_ca_file = "{certs() / "ca.pem"}"\nallowed_callers = ["CN=kassa-core"]\n'
    )


def write_config(
    path: Path,
    port: int,
    urls: list[str],
    tokens: list[str],
    chain_id: int = 31337,
    heartbeat_interval_s: float = 1.0,
) -> Path:
    quoted = ", ".join(f'"{u}"' for u in urls)
    token_list = ", ".join(f'"{t}"' for t in tokens)
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n{tls_lines(f"eip155:{chain_id}")}'
        f"[chain]\nchain_id = {chain_id}\nnode_urls = [{quoted}]\ntokens = [{token_list}]\n"
        f"heartbeat_interval_s = {heartbeat_interval_s}\npoll_interval_s = 0.2\n"
    )
    return path


def start_adapter(base: Path, urls: list[str], tokens: list[str]) -> tuple[ManagedProcess, int]:
    port = free_port()
    config = write_config(base / "evm.toml", port, urls, tokens)
    process = ManagedProcess(
        "kassa-evm",
        [console_script("kassa-evm"), "--config", str(config)],
        base / "evm.log",
        port=port,
    ).start()
    return process, port


def _core_credentials(party: str, ca: Path | None) -> grpc.ChannelCredentials:
    ca = ca or certs()
    return grpc.ssl_channel_credentials(
        (certs() / "ca.pem").read_bytes(),
        (ca / f"{party}.key").read_bytes(),
        (ca / f"{party}.pem").read_bytes(),
    )


def core_channel(port: int, party: str = "core", ca: Path | None = None) -> grpc.aio.Channel:
    """A channel to the adapter as the core does it: mutual TLS, checking its identity."""
    options = [("grpc.ssl_target_name_override", devcerts.adapter_name("eip155:31337"))]
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", _core_credentials(party, ca), options=options
    )


def core_sync_channel(port: int) -> grpc.Channel:
    """core_channel for synchronous tests."""
    options = [("grpc.ssl_target_name_override", devcerts.adapter_name("eip155:31337"))]
    return grpc.secure_channel(
        f"127.0.0.1:{port}", _core_credentials("core", None), options=options
    )


@contextlib.asynccontextmanager
async def stub(port: int) -> AsyncIterator[pb_grpc.ChainAdapterServiceStub]:
    async with core_channel(port) as channel:
        yield pb_grpc.ChainAdapterServiceStub(channel)


class Reader:
    """Reads a stream in the background so the test can drive the chain.

    Checks the stream's contract on every event it hands out: each block
    follows the last block (or Undo target) the stream reached, from the
    first Head of a fresh stream or the cursor of a resumed one, and each
    Undo starts from that last block. `last` is where the stream is.
    """

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall,  # type: ignore[type-arg]
        from_cursor: pb.BlockCursor | None = None,
    ) -> None:
        self.call = call
        self.queue: asyncio.Queue[pb.BlockEvent | BaseException] = asyncio.Queue()
        self.last = from_cursor
        self.task = asyncio.create_task(self._run())

    def _check(self, event: pb.BlockEvent) -> None:
        if event.HasField("head"):
            if self.last is None:  # a fresh stream: blocks follow from this head
                self.last = event.head.head
        elif event.HasField("block"):
            assert self.last is not None, f"block before any head or cursor: {event}"
            assert event.block.height == self.last.height + 1, (self.last, event)
            assert event.block.parent_hash == self.last.hash, (self.last, event)
            self.last = cursor_of(event.block)
        elif event.HasField("undo"):
            assert self.last is not None, f"undo before any head or cursor: {event}"
            assert event.undo.from_height == self.last.height, (self.last, event)
            assert event.undo.to_cursor.height < self.last.height, (self.last, event)
            self.last = event.undo.to_cursor

    async def _run(self) -> None:
        try:
            async for response in self.call:
                await self.queue.put(response.event)
        except BaseException as exc:
            await self.queue.put(exc)

    async def next(self, timeout_s: float = EVENT_TIMEOUT_S) -> pb.BlockEvent:
        item = await asyncio.wait_for(self.queue.get(), timeout_s)
        if isinstance(item, BaseException):
            raise item
        self._check(item)
        return item

    async def next_non_head(self, timeout_s: float = EVENT_TIMEOUT_S) -> pb.BlockEvent:
        """The next block, undo or pending event within timeout_s overall:
        heartbeats keep arriving when the stream is stuck, so a deadline per
        event would never fire and the test would hang instead of failing."""
        deadline = time.monotonic() + timeout_s
        heads: list[pb.Head] = []
        while True:
            try:
                event = await self.next(max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise AssertionError(self._stuck(timeout_s, "a non-Head event", heads)) from None
            if not event.HasField("head"):
                return event
            heads.append(event.head)

    def _stuck(self, timeout_s: float, wanted: str, heads: list[pb.Head]) -> str:
        seen = sorted({(h.head.height, h.head.hash) for h in heads})
        return (
            f"no {wanted} within {timeout_s} s; the stream is at "
            f"{self.last.height if self.last else None} "
            f"{self.last.hash if self.last else None}; "
            f"{len(heads)} heartbeats meanwhile, heads (height, hash) seen: {seen}"
        )

    async def collect_for(self, duration_s: float) -> list[pb.BlockEvent]:
        """Every event that arrives within duration_s."""
        events = []
        deadline = time.monotonic() + duration_s
        while (left_s := deadline - time.monotonic()) > 0:
            try:
                events.append(await self.next(left_s))
            except TimeoutError:
                break
        return events

    async def blocks_until(
        self, height: int, timeout_s: float = BLOCKS_TIMEOUT_S
    ) -> list[pb.Block]:
        """Blocks up to height, all within timeout_s (one deadline, not one per event)."""
        deadline = time.monotonic() + timeout_s
        blocks: list[pb.Block] = []
        while not blocks or blocks[-1].height < height:
            left_s = deadline - time.monotonic()
            try:
                event = await self.next_non_head(max(left_s, 0.0))
            except AssertionError as exc:
                got = [b.height for b in blocks]
                raise AssertionError(f"blocks until {height}: got {got}; {exc}") from None
            assert event.HasField("block"), event
            blocks.append(event.block)
        return blocks

    def close(self) -> None:
        self.call.cancel()
        self.task.cancel()


def cursor_of(block: pb.Block) -> pb.BlockCursor:
    return pb.BlockCursor(height=block.height, hash=block.hash)


async def open_stream(
    client: pb_grpc.ChainAdapterServiceStub, request: pb.StreamBlocksRequest | None = None
) -> Reader:
    request = request or pb.StreamBlocksRequest()
    return Reader(
        client.StreamBlocks(request),
        request.from_cursor if request.HasField("from_cursor") else None,
    )
