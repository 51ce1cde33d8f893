"""New request ids (core.telemetry.logs.new_request_id): 32 hex digits of os.urandom,
read 64 at a time, never repeated, and a forked child never takes its parent's
unused ones."""

from __future__ import annotations

import os
import re

from core.telemetry import logs


def test_ids_are_32_hex_digits_never_repeated() -> None:
    ids = [logs.new_request_id() for _ in range(10 * logs._IDS_PER_READ + 3)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_reads_its_own() -> None:
    logs.new_request_id()  # the parent now holds unused ones
    assert logs._IDS
    unused = set(logs._IDS)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        try:
            os.write(write, "".join(logs.new_request_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    child = {text[i : i + 32] for i in range(0, len(text), 32)}
    assert len(child) == 3 and not child & unused
